// Constant-rate creates (seed 004's capacity plan: ~400 creates/s at peak).
//
// 400 creates/s for 60 s by default (RATE, DURATION): the seed's whole peak
// write rate against one instance, well below what kurz sustains on this machine
// (bench/README.md), so latency is measured under load, not at saturation.
// Each create is a POST /api/v1/urls with the admin key (no rate limit).
//
// Thresholds (seed 004):
//   P-03 create p99 < 100 ms
//   error rate < 0.1 %; checks (201 with a short code) > 99.9 %
//   the rate was held: dropped iterations <= 1 % of those planned
import * as lib from './lib.js';

const RATE = lib.num('RATE', lib.SMOKE ? 50 : 400);
const DURATION = __ENV.DURATION || (lib.SMOKE ? '5s' : '60s');
const PLANNED = RATE * lib.seconds(DURATION);

export const options = {
    discardResponseBodies: true,
    summaryTrendStats: lib.TREND_STATS,
    scenarios: {
        create: {
            executor: 'constant-arrival-rate',
            rate: RATE,
            timeUnit: '1s',
            duration: DURATION,
            ...lib.vus(RATE),
            exec: 'create',
        },
    },
    thresholds: {
        'http_reqs{name:create}': ['count>0'],
        'http_req_duration{name:create}': [lib.latency(99, 100)],
        'http_req_failed{name:create}': ['rate<0.001'],
        checks: ['rate>0.999'],
        dropped_iterations: [`count<=${Math.floor(PLANNED * 0.01)}`],
    },
};

export function create() {
    lib.create();
}
