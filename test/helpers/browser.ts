/**
 * A real browser for tests and benches: Debian's Chromium driven by playwright-core, headless. Locally a
 * missing Chromium skips the test; in CI (CI=true) it fails it (tools.ts).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { IN_CI } from './tools.js';

export const CHROMIUM = process.env.REMEX_CHROMIUM ?? '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** True when Chromium is there; otherwise fails the test in CI, skips it elsewhere (the caller returns). */
export function requireChromium(t: TestContext): boolean {
  if (existsSync(CHROMIUM)) return true;
  const reason = `${CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium as root)`;
  if (IN_CI) throw new Error(reason);
  t.skip(reason);
  return false;
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
}

/** Where screenshots go: REMEX_SCREENSHOTS (`npm run screenshots` sets docs/images), else a temporary directory. */
export function screenshotDir(): string {
  const dir = process.env.REMEX_SCREENSHOTS ?? join(tmpdir(), 'remex-screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function screenshotPath(name: string): string {
  return join(screenshotDir(), `${name}.png`);
}
