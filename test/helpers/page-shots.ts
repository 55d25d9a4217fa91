// Screenshots as evidence that a page shows what it should: a full-page PNG on disk whose key
// elements are visible boxes inside the picture, each of which is not one flat colour (decoded by
// Chromium itself, on a blank page, through a canvas).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'puppeteer-core';
import { expect } from 'vitest';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface Shot {
  path: string;
  width: number;
  height: number;
}

/** Saves a full-page PNG to dir/name.png and checks it is a real, non-empty picture. */
export async function screenshot(page: Page, dir: string, name: string): Promise<Shot> {
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  const png = readFileSync(path);
  expect(png.subarray(0, 8).equals(PNG_SIGNATURE), `${path} is a PNG`).toBe(true);
  expect(png.length).toBeGreaterThan(2000);
  // IHDR: width and height, big-endian, right after the signature and the chunk header.
  const shot = { path, width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
  expect(shot.width).toBeGreaterThan(0);
  expect(shot.height).toBeGreaterThan(0);
  return shot;
}

/**
 * Each selector names a visible element with a non-zero box inside the screenshot (the page is
 * at the top, device scale 1, so boxes are in the picture's coordinates) whose own picture has
 * more than one colour.
 */
export async function expectVisibleIn(page: Page, shot: Shot, selectors: string[], decoder: Page): Promise<void> {
  await page.evaluate(() => window.scrollTo(0, 0));
  const handles = [];
  // Boxes first: an element screenshot scrolls the page, which moves the later boxes.
  for (const selector of selectors) {
    const handle = await page.$(selector);
    expect(handle, `${selector} in the page`).not.toBeNull();
    const box = await handle!.boundingBox();
    expect(box, `${selector} is rendered`).not.toBeNull();
    const { x, y, width, height } = box!;
    expect(width * height, `${selector} has an area`).toBeGreaterThan(0);
    expect(x >= 0 && y >= 0 && x + width <= shot.width + 0.5 && y + height <= shot.height + 0.5, `${selector} at ${JSON.stringify(box)} inside ${shot.width}x${shot.height}`).toBe(true);
    handles.push({ selector, handle: handle! });
  }
  for (const { selector, handle } of handles) {
    const picture = await handle.screenshot({ encoding: 'base64' });
    expect(await colourCount(decoder, picture), `${selector} is not one flat colour`).toBeGreaterThan(1);
  }
}

/** Distinct colours in a PNG (base64), counted by a blank page up to 16. */
async function colourCount(decoder: Page, base64: string): Promise<number> {
  return decoder.evaluate(async (data) => {
    const img = new Image();
    img.src = `data:image/png;base64,${data}`;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d')!;
    ctx.drawImage(img, 0, 0);
    const pixels = new Uint32Array(ctx.getImageData(0, 0, canvas.width, canvas.height).data.buffer);
    const seen = new Set<number>();
    for (const p of pixels) {
      seen.add(p);
      if (seen.size >= 16) break;
    }
    return seen.size;
  }, base64);
}

export function newDecoder(browser: Browser): Promise<Page> {
  return browser.newPage();
}
