/**
 * A real headless browser for tests: Debian's /usr/bin/chromium driven by playwright-core (no browser
 * download). Locally a missing chromium skips the test with a reason; in CI (CI=true) it fails it.
 */
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { IN_CI } from './tools.js';

export const CHROMIUM = '/usr/bin/chromium';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Launches chromium, or returns undefined after skipping the test (locally) when it is not installed. */
export async function launchChromium(t: TestContext): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM)) {
    const reason = `${CHROMIUM} is missing (run scripts/setup.sh as root: Debian package chromium)`;
    if (IN_CI) throw new Error(reason);
    t.skip(reason);
    return undefined;
  }
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}
