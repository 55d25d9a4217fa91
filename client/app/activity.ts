// What this tab did lately, for the Network page's plots: the speed of its last reply.
export const activity = {
  /** Decode tokens per second of the Playground's last finished reply (0 before any). */
  lastReplyTokensPerSecond: 0,
};
