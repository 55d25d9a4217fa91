// Memory bandwidth of known adapters (the vendors' published figures, bytes per second), matched by
// name in the adapter's vendor, architecture, device or description (Dawn names the GPU in device). Software adapters (SwiftShader) and
// anything not listed are unknown: bench:gpu then reports no bandwidth fraction.
import type { AdapterSummary } from '../../kernels/context.ts';

const TB = 1e12;
const GB = 1e9;

/** Most specific names first: the first match wins. */
export const KNOWN_BANDWIDTH: readonly { match: RegExp; name: string; bytesPerSecond: number }[] = [
  { match: /h200/i, name: 'NVIDIA H200', bytesPerSecond: 4.8 * TB },
  { match: /h100.*(pcie)/i, name: 'NVIDIA H100 PCIe', bytesPerSecond: 2.0 * TB },
  { match: /h100/i, name: 'NVIDIA H100 SXM', bytesPerSecond: 3.35 * TB },
  { match: /a100.*80/i, name: 'NVIDIA A100 80GB', bytesPerSecond: 2.0 * TB },
  { match: /a100/i, name: 'NVIDIA A100 40GB', bytesPerSecond: 1.555 * TB },
  { match: /l40s?/i, name: 'NVIDIA L40S', bytesPerSecond: 864 * GB },
  { match: /l4\b/i, name: 'NVIDIA L4', bytesPerSecond: 300 * GB },
  { match: /a10g/i, name: 'NVIDIA A10G', bytesPerSecond: 600 * GB },
  { match: /t4\b/i, name: 'NVIDIA T4', bytesPerSecond: 320 * GB },
  { match: /rtx 4090/i, name: 'NVIDIA GeForce RTX 4090', bytesPerSecond: 1008 * GB },
  { match: /rtx 3090/i, name: 'NVIDIA GeForce RTX 3090', bytesPerSecond: 936 * GB },
  { match: /rtx 4080/i, name: 'NVIDIA GeForce RTX 4080', bytesPerSecond: 717 * GB },
  { match: /rtx 3080/i, name: 'NVIDIA GeForce RTX 3080', bytesPerSecond: 760 * GB },
  { match: /mi300x/i, name: 'AMD Instinct MI300X', bytesPerSecond: 5.3 * TB },
  { match: /m2 max/i, name: 'Apple M2 Max', bytesPerSecond: 400 * GB },
  { match: /m1 max/i, name: 'Apple M1 Max', bytesPerSecond: 400 * GB },
  { match: /m3 max/i, name: 'Apple M3 Max', bytesPerSecond: 400 * GB },
];

export interface AdapterBandwidth {
  /** The adapter as it names itself. */
  adapter: string;
  /** The table's entry it matched, or 'unknown'. */
  known: string;
  bytesPerSecond: number | null;
}

export function adapterBandwidth(a: AdapterSummary): AdapterBandwidth {
  const adapter = [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ') || 'unnamed adapter';
  const software = a.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i.test(adapter);
  const hit = software ? undefined : KNOWN_BANDWIDTH.find((k) => k.match.test(adapter));
  return { adapter, known: hit?.name ?? 'unknown', bytesPerSecond: hit?.bytesPerSecond ?? null };
}
