// A link's page: its details and actions, the QR code, and its click statistics.
import { h, clear, when, fmtNum, copyButton, downloadBlob, toast } from '/app/dom.js';
import { api, plain, ApiError } from '/app/api.js';
import { statusBadge, editLink, deleteLink, toggleActive } from '/app/links.js';

let uplotLoading = null;
function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  uplotLoading ||= new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = '/app/vendor/uPlot.iife.min.js';
    s.onload = () => resolve(window.uPlot);
    s.onerror = () => {
      uplotLoading = null;
      reject(new Error('The chart library did not load.'));
    };
    document.head.append(s);
  });
  return uplotLoading;
}

const utcDay = (d) => d.toISOString().slice(0, 10);
const regionNames = (() => {
  try {
    return new Intl.DisplayNames(undefined, { type: 'region' });
  } catch {
    return null;
  }
})();

function countryLabel(code) {
  if (code === 'unknown') return 'Unknown';
  if (code === 'other') return 'Other';
  let name = null;
  try {
    name = regionNames && /^[A-Z]{2}$/.test(code) ? regionNames.of(code) : null;
  } catch {
    name = null;
  }
  return name && name !== code ? `${name} (${code})` : code;
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// A table of name → clicks with a bar for each row's share of the largest.
function breakdown(id, title, nameHeader, rows, label = (x) => x) {
  const max = Math.max(1, ...rows.map((r) => r.clicks));
  const body = rows.length
    ? rows.map((r) => {
        const bar = h('span.bar', { hidden: r.clicks === 0 });
        bar.style.width = `${(100 * r.clicks) / max}%`;
        return h('tr', { 'data-name': r.name },
          h('th', { scope: 'row' }, h('span.break', label(r.name))),
          h('td.num', { 'data-value': String(r.clicks) }, fmtNum(r.clicks)),
          h('td.barcell', { 'aria-hidden': 'true' }, bar));
      })
    : [h('tr.empty', h('td', { colspan: '3' }, 'No clicks in this range.'))];
  return h('section.card.breakdown', { 'aria-labelledby': id + '-title' },
    h('h3', { id: id + '-title' }, title),
    h('table', { id },
      h('thead', h('tr', h('th', { scope: 'col' }, nameHeader), h('th.num', { scope: 'col' }, 'Clicks'), h('th', { scope: 'col' }, h('span.visually-hidden', 'Share')))),
      h('tbody', body)));
}

export function linkPage(root, { params, go }) {
  const code = params[0];
  let link = null;
  let chart = null;
  let lastStats = null;
  let statsAbort = null;
  const disposers = [];

  const title = h('h1', { tabindex: '-1' }, 'Link ', h('span.code', code));
  const infoBox = h('section.card.info', { 'aria-labelledby': 'info-title' });
  const qrImg = h('img.qr', { alt: `QR code for the short link ${code}`, width: '200', height: '200' });
  const qrErr = h('p.form-error', { role: 'alert' });
  const qrBox = h('section.card.qr-box', { 'aria-labelledby': 'qr-title' },
    h('h2#qr-title', 'QR code'),
    qrImg,
    qrErr,
    h('div.actions',
      h('button.btn.small', { type: 'button', id: 'qr-png', on: { click: () => downloadQr('png') } }, 'Download PNG'),
      h('button.btn.small', { type: 'button', id: 'qr-svg', on: { click: () => downloadQr('svg') } }, 'Download SVG')));

  // Stats controls: granularity and a UTC date range (default: the last 30 days).
  const today = new Date();
  const from = h('input#stats-from', { type: 'date', name: 'start_date', value: utcDay(new Date(today.getTime() - 29 * 864e5)), required: true });
  const to = h('input#stats-to', { type: 'date', name: 'end_date', value: utcDay(today), required: true });
  const gran = h('select#stats-granularity', { name: 'granularity' },
    h('option', { value: 'hour' }, 'Hour'),
    h('option', { value: 'day' }, 'Day'),
    h('option', { value: 'week' }, 'Week'));
  gran.value = 'day';
  const statsErr = h('p.form-error', { role: 'alert' });
  const statsStatus = h('p#stats-range.muted', { role: 'status' });
  const figures = h('div.figures');
  const chartBox = h('div#chart.chart', { role: 'img', 'aria-label': 'Chart of clicks over time' });
  const readout = h('p#chart-readout.muted', { 'aria-hidden': 'true' }, '\u00a0');
  const seriesDetails = h('details#series-details');
  const tables = h('div.breakdowns');
  const statsForm = h('form.toolbar.stats-form', { novalidate: true, on: { submit: (e) => { e.preventDefault(); loadStats(); } } },
    h('div.field', h('label', { for: 'stats-granularity' }, 'Granularity'), gran),
    h('div.field', h('label', { for: 'stats-from' }, 'From (UTC)'), from),
    h('div.field', h('label', { for: 'stats-to' }, 'To (UTC, inclusive)'), to),
    h('div.field.actions-inline', h('button.btn.primary', { type: 'submit', id: 'stats-apply' }, 'Show'),
      h('button.btn', { type: 'button', id: 'stats-refresh', on: { click: () => refresh() } }, 'Refresh')));
  gran.addEventListener('change', () => loadStats());

  root.append(
    h('p.back', h('a', { href: '#/links' }, '← My links')),
    title,
    h('div.link-top', infoBox, qrBox),
    h('section.stats', { 'aria-labelledby': 'stats-title' },
      h('h2#stats-title', 'Clicks'),
      statsForm,
      statsErr,
      statsStatus,
      figures,
      h('section.card.chart-card', { 'aria-labelledby': 'chart-title' }, h('h3#chart-title', 'Clicks over time'), chartBox, readout, seriesDetails),
      tables));

  function renderInfo(err) {
    clear(infoBox).append(h('h2#info-title', 'Details'));
    if (err) {
      infoBox.append(h('p.form-error', { role: 'alert' }, plain(err)));
      return;
    }
    const meta = Object.entries(link.metadata || {});
    const toggle = h('button.btn.small', { type: 'button', id: 'link-toggle', on: { click: onToggle } }, link.is_active ? 'Disable' : 'Enable');
    infoBox.append(
      h('dl.props',
        h('dt', 'Short URL'), h('dd', h('a#short-url.break', { href: link.short_url, target: '_blank', rel: 'noopener noreferrer' }, link.short_url), ' ', copyButton(link.short_url, 'Copy short URL')),
        h('dt', 'Target'), h('dd', h('span.break#target', link.original_url)),
        h('dt', 'Status'), h('dd', statusBadge(link), ` ${link.redirect_type} redirect`),
        h('dt', 'Created'), h('dd', when(link.created_at)),
        h('dt', 'Expires'), h('dd', link.expires_at ? when(link.expires_at) : 'Never'),
        h('dt', 'Redirects'), h('dd', h('span#click-count', { 'data-value': String(link.click_count) }, fmtNum(link.click_count)), h('span.muted', ' all time, bots included')),
        h('dt', 'Last click'), h('dd', when(link.last_accessed_at))),
      meta.length
        ? h('div.meta', h('h3', 'Labels'), h('dl#metadata.props', meta.map(([k, v]) => [h('dt', k), h('dd', h('span.break', String(v)))])))
        : null,
      h('div.actions',
        h('button.btn.small', { type: 'button', id: 'link-edit', on: { click: onEdit } }, 'Edit'),
        toggle,
        h('button.btn.small.danger-outline', { type: 'button', id: 'link-delete', on: { click: onDelete } }, 'Delete')));
  }

  async function onEdit() {
    const updated = await editLink(link);
    if (updated) {
      link = updated;
      renderInfo();
      infoBox.querySelector('#link-edit').focus();
    }
  }
  async function onToggle(e) {
    e.target.disabled = true;
    try {
      link = await toggleActive(link);
      renderInfo();
      infoBox.querySelector('#link-toggle').focus();
    } catch (err) {
      e.target.disabled = false;
      toast(plain(err));
    }
  }
  async function onDelete() {
    if (await deleteLink(link)) go('#/links');
  }

  async function loadInfo() {
    try {
      link = await api.info(code);
      renderInfo();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      link = null;
      renderInfo(err);
    }
  }

  async function loadQr() {
    try {
      const blob = await api.qr(code, 'svg', 256);
      const url = URL.createObjectURL(blob);
      disposers.push(() => URL.revokeObjectURL(url));
      qrImg.src = url;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) qrErr.textContent = plain(err);
    }
  }

  async function downloadQr(format) {
    try {
      const blob = await api.qr(code, format, 512);
      downloadBlob(blob, `${code}-qr.${format}`);
    } catch (err) {
      qrErr.textContent = plain(err);
    }
  }

  async function loadStats() {
    statsErr.textContent = '';
    if (!from.value || !to.value) {
      statsErr.textContent = 'Choose both dates of the range.';
      return;
    }
    if (statsAbort) statsAbort.abort();
    statsAbort = new AbortController();
    root.querySelector('.stats').setAttribute('aria-busy', 'true');
    try {
      const s = await api.stats(code, { start_date: from.value, end_date: to.value, granularity: gran.value }, statsAbort.signal);
      lastStats = s;
      renderStats(s);
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (!(err instanceof ApiError && err.status === 401)) statsErr.textContent = plain(err);
    } finally {
      root.querySelector('.stats')?.removeAttribute('aria-busy');
    }
  }

  function renderStats(s) {
    const fmtRange = (iso) => iso.replace('T', ' ').replace(/:00(\.0+)?Z$/, '').replace(/(\.\d+)?Z$/, '') + ' UTC';
    statsStatus.textContent = `From ${fmtRange(s.start_date)} to ${fmtRange(s.end_date)}, by ${s.granularity}. Bots are counted apart.`;
    const fig = (id, label, value, note) =>
      h('div.figure', h('p.fig-label', label), h('p.fig-value', { id, 'data-value': String(value) }, fmtNum(value)), note ? h('p.fig-note.muted', note) : null);
    clear(figures).append(
      fig('stat-total', 'Clicks', s.total_clicks, 'by people'),
      fig('stat-unique', 'Unique visitors', s.unique_visitors, 'estimated'),
      fig('stat-bots', 'Bots', s.bots, 'not counted above'));
    // The series as a table too (for screen readers and exact numbers).
    const unit = { hour: 'Hour', day: 'Day', week: 'Week' }[s.granularity] || 'Bucket';
    const rows = s.time_series.map((b) => h('tr', { 'data-ts': b.timestamp }, h('td', b.timestamp.replace('T', ' ').replace(/:00Z$/, ' UTC')), h('td.num', { 'data-value': String(b.clicks) }, fmtNum(b.clicks))));
    const open = seriesDetails.open;
    clear(seriesDetails).append(
      h('summary', `Clicks per ${unit.toLowerCase()} as a table`),
      h('table#stats-series', h('thead', h('tr', h('th', { scope: 'col' }, `${unit} starting`), h('th.num', { scope: 'col' }, 'Clicks'))), h('tbody', rows)));
    seriesDetails.open = open;
    const d = s.devices || {};
    clear(tables).append(
      breakdown('stats-countries', 'Countries', 'Country', s.geographic.map((x) => ({ name: x.country, clicks: x.clicks })), countryLabel),
      breakdown('stats-referrers', 'Referrers', 'Source', s.referrers.map((x) => ({ name: x.source, clicks: x.clicks })), (n) => (n === 'direct' ? 'Direct (none)' : n)),
      breakdown('stats-devices', 'Devices', 'Device', ['desktop', 'mobile', 'tablet', 'other'].map((k) => ({ name: k, clicks: d[k] || 0 })), (n) => n[0].toUpperCase() + n.slice(1)),
      breakdown('stats-browsers', 'Browsers', 'Browser', s.browsers),
      breakdown('stats-os', 'Operating systems', 'System', s.operating_systems));
    drawChart(s);
  }

  async function drawChart(s) {
    let uPlot;
    try {
      uPlot = await loadUPlot();
    } catch (err) {
      chartBox.textContent = err.message;
      return;
    }
    if (!chartBox.isConnected || s !== lastStats) return;
    const xs = s.time_series.map((b) => Date.parse(b.timestamp) / 1000);
    const ys = s.time_series.map((b) => b.clicks);
    const total = ys.reduce((a, b) => a + b, 0);
    const step = xs.length > 1 ? xs[1] - xs[0] : { hour: 3600, day: 86400, week: 604800 }[s.granularity] || 3600;
    chartBox.setAttribute('aria-label', `Chart of clicks by ${s.granularity}: ${fmtNum(total)} clicks over ${xs.length} ${s.granularity}s. The same numbers are in the table below.`);
    if (chart) chart.destroy();
    clear(chartBox);
    const fg = cssVar('--muted');
    const grid = cssVar('--grid');
    const accent = cssVar('--accent');
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const unitText = s.granularity;
    chart = new uPlot({
      width: Math.max(280, chartBox.clientWidth),
      height: 240,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      // Half a bucket of room at both ends, so the first and last bars show whole.
      scales: { x: { time: true, range: (u, min, max) => [min - step / 2, max + step / 2] }, y: { range: (u, min, max) => [0, Math.max(4, Math.ceil(max * 1.1))] } },
      axes: [{ ...axis }, { ...axis, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6, 1e7], size: 50 }],
      series: [
        {},
        { label: 'Clicks', stroke: accent, fill: accent + '55', width: 1, paths: uPlot.paths.bars({ size: [0.8, 48] }), points: { show: false } },
      ],
      hooks: {
        setCursor: [
          (u) => {
            const i = u.cursor.idx;
            readout.textContent = i == null ? '\u00a0' : `${s.time_series[i].timestamp.replace('T', ' ').replace(/:00Z$/, ' UTC')} (${unitText}): ${fmtNum(ys[i])} clicks`;
          },
        ],
      },
    }, [xs, ys], chartBox);
  }

  const ro = new ResizeObserver(() => {
    if (chart && chartBox.clientWidth) chart.setSize({ width: Math.max(280, chartBox.clientWidth), height: 240 });
  });
  ro.observe(chartBox);
  const mq = matchMedia('(prefers-color-scheme: dark)');
  const onScheme = () => lastStats && drawChart(lastStats);
  mq.addEventListener('change', onScheme);

  function refresh() {
    loadInfo();
    loadStats();
  }

  loadInfo();
  loadQr();
  loadStats();

  return () => {
    ro.disconnect();
    mq.removeEventListener('change', onScheme);
    if (statsAbort) statsAbort.abort();
    if (chart) chart.destroy();
    for (const d of disposers) d();
  };
}
