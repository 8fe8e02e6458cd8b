// A redirect spike (seed 004's `spike_test`, 1,000/s → 50,000/s and back; seed
// C-07, "10x traffic spike: graceful handling").
//
// Scaled to a 2-core machine that also runs kurz: BASE_RATE (500/s) for 30 s,
// a 10 s ramp to PEAK_RATE (2,500/s, 5×), held 30 s, a 10 s ramp back, 30 s at
// BASE_RATE: 2 min. STAGE_SCALE multiplies every stage's length (0.5 = 1 min).
// K6_SMOKE=1: 1 s per stage, 100/s → 500/s.
//
// Thresholds: a spike is about graceful handling, so the latency bound is seed
// 000's redirect budget (p95 < 100 ms, p99 < 200 ms) rather than P-01; and
//   error rate < 0.1 %; checks (302 to the right Location) > 99.9 %
//   the rate was held: dropped iterations <= 1 % of those planned
import * as lib from './lib.js';

const BASE = lib.num('BASE_RATE', lib.SMOKE ? 100 : 500);
const PEAK = lib.num('PEAK_RATE', lib.SMOKE ? 500 : 2500);
const SCALE = lib.num('STAGE_SCALE', 1);
const s = (secs) => `${Math.max(1, Math.round(secs * (lib.SMOKE ? 1 : SCALE)))}s`;
const STEADY = lib.SMOKE ? 1 : 30;
const RAMP = lib.SMOKE ? 1 : 10;
const STAGES = [
    { duration: s(STEADY), target: BASE },
    { duration: s(RAMP), target: PEAK },
    { duration: s(STEADY), target: PEAK },
    { duration: s(RAMP), target: BASE },
    { duration: s(STEADY), target: BASE },
];
// Requests planned: the area under the rate curve (ramps count half).
const PLANNED =
    (BASE * 2 * lib.seconds(STAGES[0].duration)) +
    ((BASE + PEAK) / 2) * 2 * lib.seconds(STAGES[1].duration) +
    PEAK * lib.seconds(STAGES[2].duration);

export const options = {
    discardResponseBodies: true,
    summaryTrendStats: lib.TREND_STATS,
    scenarios: {
        spike: {
            executor: 'ramping-arrival-rate',
            startRate: BASE,
            timeUnit: '1s',
            stages: STAGES,
            ...lib.vus(PEAK),
            exec: 'redirect',
        },
    },
    thresholds: {
        'http_reqs{name:redirect}': ['count>0'],
        'http_req_duration{name:redirect}': [lib.latency(95, 100), lib.latency(99, 200)],
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
