// Constant-rate redirects (seed 004's `constant_load`: 10,000/s for 30 min).
//
// Scaled to a 2-core machine that also runs kurz: 2,000 redirects/s for 60 s by
// default (RATE, DURATION), over the links in CODES_FILE (a few hundred, Zipf or
// uniform mix), each with a browser User-Agent and often a Referer, so each is
// a human click for kurz's analytics. setup() visits every link once, so the
// timed part is cache hits.
//
// Thresholds (seed 004):
//   P-01 redirect p99 < 10 ms (cache hit)
//   error rate < 0.1 %; checks (302 to the right Location) > 99.9 %
//   the rate was held: dropped iterations <= 1 % of those planned
import * as lib from './lib.js';

const RATE = lib.num('RATE', lib.SMOKE ? 200 : 2000);
const DURATION = __ENV.DURATION || (lib.SMOKE ? '5s' : '60s');
const PLANNED = RATE * lib.seconds(DURATION);

export const options = {
    discardResponseBodies: true,
    summaryTrendStats: lib.TREND_STATS,
    scenarios: {
        redirect: {
            executor: 'constant-arrival-rate',
            rate: RATE,
            timeUnit: '1s',
            duration: DURATION,
            ...lib.vus(RATE),
            exec: 'redirect',
        },
    },
    thresholds: {
        'http_reqs{name:redirect}': ['count>0'],
        'http_req_duration{name:redirect}': [lib.latency(99, 10)],
        'http_req_failed{name:redirect}': ['rate<0.001'],
        checks: ['rate>0.999'],
        dropped_iterations: [`count<=${Math.floor(PLANNED * 0.01)}`],
    },
};

export function setup() {
    lib.warm();
}

export function redirect() {
    lib.redirect();
}
