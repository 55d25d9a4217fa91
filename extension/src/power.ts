// Whether the device runs on AC power, from the Battery Status API where the browser has it
// (Chromium does in windows and in the offscreen document; service workers do not have it).
import type { PowerState } from './protocol.ts';

interface BatteryManager extends EventTarget {
  readonly charging: boolean;
}

/** The power state now ('unknown' where the API is missing), and onChange on every change. */
export async function watchPower(onChange?: (state: PowerState) => void): Promise<PowerState> {
  const nav = navigator as Navigator & { getBattery?: () => Promise<BatteryManager> };
  if (typeof nav.getBattery !== 'function') return 'unknown';
  try {
    const battery = await nav.getBattery();
    const read = (): PowerState => (battery.charging ? 'ac' : 'battery');
    if (onChange) battery.addEventListener('chargingchange', () => onChange(read()));
    return read();
  } catch {
    return 'unknown';
  }
}

export function describePower(state: PowerState): string {
  if (state === 'ac') return 'on AC power';
  if (state === 'battery') return 'on battery';
  return 'unknown on this platform';
}
