// Typed access to page-traffic.js from Node, and its source text for pages.
import { readFileSync } from 'node:fs';
import type { Mesh } from '../../client/mesh/index.ts';
import './page-traffic.js';

export interface TrafficState {
  bytes: Record<string, number>;
  digests: Record<string, Promise<string>[]>;
}

export interface Traffic {
  DATA: number;
  listen(mesh: Mesh): TrafficState;
  settle(state: TrafficState): Promise<{ bytes: Record<string, number>; digests: Record<string, string[]> }>;
  send(mesh: Mesh, to: string, totalBytes: number): Promise<{ bytes: number; digests: string[] }>;
  throughput(mesh: Mesh, to: string, totalBytes: number, frameBytes: number): Promise<number>;
  roundTrips(mesh: Mesh, to: string, count: number): Promise<number[]>;
}

export const traffic = (globalThis as unknown as { aigridTraffic: Traffic }).aigridTraffic;

export const TRAFFIC_SOURCE = readFileSync(new URL('./page-traffic.js', import.meta.url), 'utf8');
