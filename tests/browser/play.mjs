#!/usr/bin/env node
// Plays one live corecast manifest in headless Chromium with a real web player and prints one
// JSON line describing what the player did.
//
//   node play.mjs <hls|dash> <manifest-url> <seconds> [--min-advance S] [--startup-timeout S]
//
// The page and the player library are served from this script's own HTTP server on 127.0.0.1
// (another origin than corecast), so every manifest and segment request is cross-origin and
// CORS is exercised the way it is for a real site embedding the stream. Chromium is Debian's
// /usr/bin/chromium (override with $CHROMIUM) driven by playwright-core; Playwright's own browser
// download is not used. `seconds` counts from the first 'playing' event. Exit status: 0 when
// currentTime advanced at least --min-advance seconds (default 60 % of `seconds`), 1 when it did
// not, 2 on a usage or launch error.

import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

// Flags from the machine notes: without the background-networking ones Chromium keeps trying
// Google's hosts on a closed network. Autoplay is allowed so playback starts without a gesture.
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

// The player libraries, straight from node_modules (versions pinned in package.json).
const PLAYERS = {
  hls: { script: 'hls.min.js', file: join(here, 'node_modules/hls.js/dist/hls.min.js') },
  // dash.js 5 moved its UMD build under dist/modern/umd; 4 has it at dist/.
  dash: {
    script: 'dash.all.min.js',
    file: [
      join(here, 'node_modules/dashjs/dist/modern/umd/dash.all.min.js'),
      join(here, 'node_modules/dashjs/dist/dash.all.min.js'),
    ].find((f) => existsSync(f)) ?? join(here, 'node_modules/dashjs/dist/dash.all.min.js'),
  },
};

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node play.mjs <hls|dash> <manifest-url> <seconds> ` +
      '[--min-advance S] [--startup-timeout S]\n',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const positional = [];
  const options = { minAdvance: null, startupTimeout: 20 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--min-advance' || arg === '--startup-timeout') {
      const value = Number(argv[++i]);
      if (!Number.isFinite(value) || value < 0) usage(`${arg} needs a number of seconds`);
      if (arg === '--min-advance') options.minAdvance = value;
      else options.startupTimeout = value;
    } else {
      positional.push(arg);
    }
  }
  if (positional.length !== 3) usage('expected 3 arguments');
  const [player, url, secondsText] = positional;
  if (!PLAYERS[player]) usage(`unknown player ${player}`);
  const seconds = Number(secondsText);
  if (!Number.isFinite(seconds) || seconds <= 0) usage(`bad seconds ${secondsText}`);
  if (!/^https?:\/\//.test(url)) usage(`manifest URL must be http(s): ${url}`);
  return {
    player,
    url,
    seconds,
    minAdvance: options.minAdvance ?? seconds * 0.6,
    startupTimeout: options.startupTimeout,
  };
}

// Serves the page (with the chosen player's <script> tag) and the player library.
function startPageServer(player) {
  const { script, file } = PLAYERS[player];
  let library;
  try {
    library = readFileSync(file);
  } catch (e) {
    usage(`${file} is missing (${e.code}): run \`npm ci\` in ${here}`);
  }
  const page = readFileSync(join(here, 'player.html'), 'utf8').replace(
    '<!-- PLAYER_SCRIPT -->',
    `<script src="/${script}"></script>`,
  );
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://page').pathname;
    if (path === '/' || path === '/player.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    } else if (path === `/${script}`) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(library);
    } else if (path === '/favicon.ico') {
      // Chromium asks for it; a 404 would show up among the console errors.
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Codec strings the player announced, for a MediaSource.isTypeSupported check.
function announcedCodecs(snapshot) {
  const codecs = new Set();
  for (const level of snapshot.levels || []) {
    for (const c of String(level.codecs || '').split(',')) if (c.trim()) codecs.add(c.trim());
  }
  for (const track of [...(snapshot.videoTracks || []), ...(snapshot.audioTracks || [])]) {
    if (track.codec) {
      const match = /codecs="?([^"]+)"?/.exec(track.codec);
      codecs.add(match ? match[1] : track.codec);
    }
  }
  return [...codecs];
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const pageServer = await startPageServer(args.player);
  const pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;
  const profile = mkdtempSync(join(tmpdir(), 'corecast-chromium-'));
  const hardStop = setTimeout(() => {
    process.stderr.write('play.mjs: hard time limit reached\n');
    process.exit(2);
  }, (args.startupTimeout + args.seconds + 30) * 1000);

  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_FLAGS,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    process.stderr.write(`play.mjs: could not start Chromium: ${e.message}\n`);
    process.exit(2);
  }

  const consoleMessages = [];
  const network = [];
  const keep = (list, entry) => list.length < 40 && list.push(entry);
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      keep(consoleMessages, `${msg.type()}: ${msg.text()}`.slice(0, 500));
    }
  });
  page.on('pageerror', (error) => keep(consoleMessages, `pageerror: ${error.message}`));
  page.on('requestfailed', (request) => {
    keep(network, { url: request.url(), failure: request.failure()?.errorText ?? 'failed' });
  });
  page.on('response', (response) => {
    if (response.status() >= 400) keep(network, { url: response.url(), status: response.status() });
  });

  const pageUrl = `${pageOrigin}/?player=${args.player}&src=${encodeURIComponent(args.url)}`;
  const launched = Date.now();
  await page.goto(pageUrl);
  const snapshot = () => page.evaluate(() => window.snapshot());
  const hasFatal = (s) => s.errors.some((e) => e.fatal) || s.videoErrors.length > 0;

  let state = await snapshot();
  while (!state.started && !hasFatal(state) && Date.now() - launched < args.startupTimeout * 1000) {
    await sleep(250);
    state = await snapshot();
  }
  const startupSeconds = state.started ? (Date.now() - launched) / 1000 : null;
  if (state.started) {
    const until = Date.now() + args.seconds * 1000;
    while (Date.now() < until && !hasFatal(state)) {
      await sleep(250);
      state = await snapshot();
    }
  }
  const codecs = announcedCodecs(state);
  const codecSupport = await page.evaluate(
    (list) => Object.fromEntries(list.map((c) => [c, MediaSource.isTypeSupported(`video/mp4; codecs="${c}"`)])),
    codecs,
  );

  const result = {
    player: args.player,
    playerVersion: state.playerVersion,
    browser: `Chromium ${context.browser()?.version() ?? '?'}`,
    url: args.url,
    pageOrigin,
    playing: state.started && !state.paused && state.readyState >= 2 && state.advanced > 0,
    startupSeconds,
    startTime: state.startTime,
    currentTime: state.currentTime,
    advanced: state.advanced,
    played: state.played,
    playedRanges: state.playedRanges,
    videoWidth: state.videoWidth,
    videoHeight: state.videoHeight,
    stalls: state.stalls,
    errors: state.errors,
    fatalErrors: state.errors.filter((e) => e.fatal).length,
    videoErrors: state.videoErrors,
    levels: state.levels,
    audioLevels: state.audioLevels,
    audioTracks: state.audioTracks,
    videoTracks: state.videoTracks ?? null,
    codecSupport,
    fragments: state.fragments,
    buffered: state.buffered,
    totalVideoFrames: state.totalVideoFrames,
    droppedVideoFrames: state.droppedVideoFrames,
    audioDecodedBytes: state.audioDecodedBytes,
    videoDecodedBytes: state.videoDecodedBytes,
    console: consoleMessages,
    network,
    events: state.events,
  };
  process.stdout.write(JSON.stringify(result) + '\n');

  clearTimeout(hardStop);
  await context.close();
  pageServer.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(result.advanced >= args.minAdvance ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`play.mjs: ${e.stack || e}\n`);
  process.exit(2);
});
