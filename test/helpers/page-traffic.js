// Seeded binary traffic over a mesh, with a SHA-256 per frame on both ends, for the end-to-end
// test and the mesh benchmark. Plain JavaScript on purpose: pages get this file's text as is
// (page.addScriptTag), Node imports it; both then use globalThis.aigridTraffic.
globalThis.aigridTraffic = {
  DATA: 16,
  // Frame sizes cycle through these: larger than the channel's max message (chunked), exactly one
  // chunk, tiny, and empty.
  SIZES: [1048583, 300000, 65536, 262144, 1000, 1, 0],

  /** Deterministic bytes for (from, to, index): xorshift32 seeded from the three. */
  payload(from, to, index, size) {
    let s = 2166136261;
    for (const ch of `${from}>${to}#${index}`) s = Math.imul(s ^ ch.charCodeAt(0), 16777619) >>> 0;
    const out = new Uint8Array(size);
    for (let i = 0; i < size; i++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      out[i] = s & 255;
    }
    return out;
  },

  async digest(bytes) {
    const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return Array.from(hash, (b) => b.toString(16).padStart(2, '0')).join('');
  },

  /** Records every data frame per sender: bytes and a digest per frame, in arrival order. */
  listen(mesh) {
    const state = { bytes: {}, digests: {} };
    mesh.on('frame', (from, frame) => {
      if (frame.type !== this.DATA) return;
      state.bytes[from] = (state.bytes[from] ?? 0) + frame.payload.byteLength;
      (state.digests[from] ??= []).push(this.digest(frame.payload));
    });
    return state;
  },

  async settle(state) {
    const digests = {};
    for (const [from, list] of Object.entries(state.digests)) digests[from] = await Promise.all(list);
    return { bytes: { ...state.bytes }, digests };
  },

  /** Sends totalBytes to one peer as frames cycling through SIZES; returns what was sent. */
  async send(mesh, to, totalBytes) {
    const digests = [];
    let sent = 0;
    for (let i = 0; sent < totalBytes; i++) {
      const size = Math.min(this.SIZES[i % this.SIZES.length], totalBytes - sent);
      const bytes = this.payload(mesh.peerId, to, i, size);
      digests.push(await this.digest(bytes));
      await mesh.send(to, this.DATA, bytes);
      sent += size;
    }
    return { bytes: sent, digests };
  },

  /**
   * Sends totalBytes to one peer in frames of frameBytes, then a ping: the channel is ordered, so
   * the pong comes back only after every byte was received. Returns MiB/s.
   */
  async throughput(mesh, to, totalBytes, frameBytes) {
    const link = await mesh.connect(to);
    const frame = this.payload(mesh.peerId, to, 0, frameBytes);
    const t0 = performance.now();
    const sends = [];
    for (let sent = 0; sent < totalBytes; sent += frameBytes) sends.push(link.send(this.DATA, frame));
    await Promise.all(sends);
    await link.ping();
    return totalBytes / (1024 * 1024) / ((performance.now() - t0) / 1000);
  },

  /** Round trips of a small frame over the data channel, sorted ascending, in ms. */
  async roundTrips(mesh, to, count) {
    const link = await mesh.connect(to);
    const samples = [];
    for (let i = 0; i < count; i++) samples.push(await link.ping());
    return samples.sort((a, b) => a - b);
  },
};
