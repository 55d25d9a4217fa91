// Policies: operators' JavaScript run in a QuickJS sandbox, and what the hooks that run them share.
export { PolicySandbox, Policy, type CompileOptions, type SandboxStats } from './sandbox.ts';
export { withFallback, PolicyFailures, type PolicyFailureCount, type PolicyFailureReport, type PolicyFailuresOptions } from './hooks.ts';
export { DEFAULT_POLICY_LIMITS, type PolicyLimits } from './limits.ts';
