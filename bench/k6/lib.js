// Shared by the k6 scenarios in this folder (bench/k6/README.md). Run by
// bench/run_k6.sh, which starts kurz, creates the links and passes:
//
//   BASE_URL    kurz's address, e.g. http://127.0.0.1:8080
//   CODES_FILE  JSON array of {"code": ..., "url": ...}: the links to redirect to
//   API_KEY     a key allowed to create links without a rate limit (the admin key)
//   K6_SMOKE=1  every scenario runs ~5 s at a low rate (a correctness check; its
//               latencies mean little, and latency thresholds are loosened to 250 ms)
//   MIX         zipf (default: link i is picked with weight 1/i) or uniform
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
export const API_KEY = __ENV.API_KEY || '';
export const SMOKE = __ENV.K6_SMOKE === '1';
const MIX = __ENV.MIX || 'zipf';

if (!__ENV.CODES_FILE) {
    throw new Error('CODES_FILE is not set: run the scenarios through bench/run_k6.sh');
}
export const links = new SharedArray('links', () => JSON.parse(open(__ENV.CODES_FILE)));
if (links.length === 0) {
    throw new Error(`${__ENV.CODES_FILE} holds no links`);
}

/** A number from the environment, or `fallback`. */
export function num(name, fallback) {
    const v = __ENV[name];
    if (v === undefined || v === '') return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v} is not a number`);
    return n;
}

/** Seconds in a k6 duration such as "90s", "2m", "1h30m". */
export function seconds(duration) {
    const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
    let total = 0;
    let matched = '';
    let m;
    while ((m = re.exec(duration)) !== null) {
        total += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
        matched += m[0];
    }
    if (matched !== duration || matched === '') throw new Error(`bad duration "${duration}"`);
    return total;
}

// Cumulative weights for the Zipf mix (s = 1): a few links get most clicks, as with
// real short links. Made once per VU; a few hundred links cost nothing.
const cdf = (() => {
    const w = [];
    let sum = 0;
    for (let i = 0; i < links.length; i++) {
        sum += MIX === 'uniform' ? 1 : 1 / (i + 1);
        w.push(sum);
    }
    return w.map((x) => x / sum);
})();

function pickLink() {
    const r = Math.random();
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cdf[mid] < r) lo = mid + 1;
        else hi = mid;
    }
    return links[lo];
}

// Browser User-Agents, weighted roughly like today's browser share (mobile first).
// kurz classifies each as a human click (a bot's User-Agent would skip most of the
// click analytics, which would flatter the figures).
const USER_AGENTS = [
    [30, 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36'],
    [25, 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1'],
    [20, 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36'],
    [8, 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15'],
    [7, 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0'],
    [5, 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0'],
    [5, 'Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36'],
];
const REFERERS = [
    [40, null],
    [25, 'https://t.co/'],
    [15, 'https://www.facebook.com/'],
    [10, 'https://www.linkedin.com/'],
    [10, 'https://news.example.com/item?id=1'],
];

function weighted(table) {
    const total = table.reduce((s, [w]) => s + w, 0);
    let r = Math.random() * total;
    for (const [w, v] of table) {
        r -= w;
        if (r < 0) return v;
    }
    return table[table.length - 1][1];
}

/** One redirect of a link from the mix: must be a 302 to the link's URL. */
export function redirect() {
    const link = pickLink();
    const headers = { 'User-Agent': weighted(USER_AGENTS) };
    const referer = weighted(REFERERS);
    if (referer) headers.Referer = referer;
    const res = http.get(`${BASE_URL}/${link.code}`, {
        headers,
        redirects: 0,
        tags: { name: 'redirect' },
    });
    check(res, {
        'redirect: 302 to the link URL': (r) => r.status === 302 && r.headers.Location === link.url,
    });
}

/** One create with the admin key: must be a 201 with a short code. */
export function create() {
    const body = JSON.stringify({
        original_url: `https://example.com/k6/${__VU}/${__ITER}?t=${Date.now()}`,
    });
    const res = http.post(`${BASE_URL}/api/v1/urls`, body, {
        headers: { 'Content-Type': 'application/json', 'X-API-Key': API_KEY },
        responseType: 'text',
        tags: { name: 'create' },
    });
    check(res, {
        'create: 201 with a short code': (r) => r.status === 201 && typeof r.json('short_code') === 'string',
    });
}

/**
 * setup(): one GET per link, so the timed part measures cache hits (P-01) and a
 * wrong Location fails the run before it starts. Tagged apart from the timed
 * redirects.
 */
export function warm() {
    let wrong = 0;
    for (const link of links) {
        const res = http.get(`${BASE_URL}/${link.code}`, {
            headers: { 'User-Agent': USER_AGENTS[0][1] },
            redirects: 0,
            tags: { name: 'warm-up' },
        });
        if (res.status !== 302 || res.headers.Location !== link.url) wrong++;
    }
    if (wrong > 0) throw new Error(`warm-up: ${wrong} of ${links.length} links did not redirect to their URL`);
}

/**
 * A latency threshold: `p(NN)<MS`. In smoke mode the bound is at least 250 ms: a
 * 5-second run's p99 is its ~10th slowest request, which one scheduler hiccup on a
 * shared machine (or a debug build) decides. Error, check and rate thresholds stay.
 */
export function latency(percentile, ms) {
    return `p(${percentile})<${SMOKE ? Math.max(ms, 250) : ms}`;
}

/** Statistics kept in the summary (bench/run_k6.sh reads p(50) and p(99)). */
export const TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'];

/** VUs for an arrival rate: enough for `rate` requests of up to ~50 ms in flight. */
export function vus(rate) {
    return { preAllocatedVUs: Math.max(10, Math.ceil(rate / 100)), maxVUs: Math.max(50, Math.ceil(rate / 20)) };
}
