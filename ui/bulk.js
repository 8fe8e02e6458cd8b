// Bulk create: a pasted or uploaded list (one URL per line, or CSV with a `url`
// column and an optional `alias` column), sent in chunks of at most 1,000.
import { h, clear, field, setFieldError, fmtNum, copyButton, downloadBlob } from '/app/dom.js';
import { api, plain, ApiError } from '/app/api.js';

const CHUNK = 1000;
const SHOWN = 1000;

// RFC 4180 records, each with the line it starts on.
export function csvRecords(text) {
  const out = [];
  let rec = [];
  let cell = '';
  let quoted = false;
  let line = 1;
  let start = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else {
        if (c === '\n') line++;
        cell += c;
      }
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === ',') {
      rec.push(cell);
      cell = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      rec.push(cell);
      out.push({ line: start, cells: rec });
      rec = [];
      cell = '';
      line++;
      start = line;
    } else cell += c;
  }
  if (cell !== '' || rec.length) {
    rec.push(cell);
    out.push({ line: start, cells: rec });
  }
  return out;
}

// → {items: [{line, url, alias}], problems: [{line, url, alias, error}]}
export function parseList(text) {
  const items = [];
  const problems = [];
  const lines = text.split(/\r\n|\n|\r/);
  const firstIdx = lines.findIndex((l) => l.trim() !== '');
  if (firstIdx < 0) return { items, problems };
  const header = csvRecords(lines[firstIdx])[0].cells.map((c) => c.trim().toLowerCase());
  const urlCol = header.findIndex((c) => c === 'url' || c === 'original_url');
  if (urlCol >= 0) {
    const aliasCol = header.findIndex((c) => c === 'alias' || c === 'custom_alias');
    for (const r of csvRecords(text)) {
      if (r.line <= firstIdx + 1 || r.cells.every((c) => c.trim() === '')) continue;
      const url = (r.cells[urlCol] || '').trim();
      const alias = aliasCol >= 0 ? (r.cells[aliasCol] || '').trim() : '';
      if (!url) problems.push({ line: r.line, url, alias, error: 'This line has no URL.' });
      else items.push({ line: r.line, url, alias });
    }
  } else {
    lines.forEach((l, i) => {
      if (l.trim()) items.push({ line: i + 1, url: l.trim(), alias: '' });
    });
  }
  return { items, problems };
}

// A CSV cell; a leading = + @ or control character is quoted away so a
// spreadsheet does not run it as a formula.
function csvCell(v) {
  let s = v == null ? '' : String(v);
  if (/^[=+@\t\r]/.test(s)) s = "'" + s;
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function bulkPage(root) {
  const list = field({
    label: 'URLs',
    name: 'list',
    type: 'textarea',
    hint: 'One URL per line, or CSV with a header row: a url column and an optional alias column.',
    attrs: { rows: '10', spellcheck: 'false', autocomplete: 'off', placeholder: 'https://example.com/one\nhttps://example.com/two' },
  });
  const file = h('input#bulk-file', { type: 'file', name: 'file', accept: '.txt,.csv,text/plain,text/csv' });
  const fileErr = h('p.field-error', { id: 'bulk-file-err' });
  file.setAttribute('aria-describedby', 'bulk-file-err');
  file.addEventListener('change', async () => {
    fileErr.textContent = '';
    const f = file.files[0];
    if (!f) return;
    try {
      list.input.value = await f.text();
    } catch {
      fileErr.textContent = 'That file could not be read.';
    }
  });
  const submit = h('button.btn.primary', { type: 'submit' }, 'Create links');
  const formErr = h('p.form-error', { role: 'alert' });
  const progress = h('progress#bulk-progress', { max: '1', value: '0', hidden: true, 'aria-label': 'Progress' });
  const progressText = h('p#bulk-progress-text.muted', { role: 'status' });
  const results = h('section#bulk-results', { 'aria-labelledby': 'bulk-results-title', hidden: true });
  const form = h('form.card', { novalidate: true, on: { submit: onSubmit } },
    list.wrap,
    h('div.field', h('label', { for: 'bulk-file' }, 'Or load a .txt or .csv file'), file, fileErr),
    formErr,
    h('div.actions', submit),
    progress,
    progressText);

  async function onSubmit(e) {
    e.preventDefault();
    setFieldError(list, '');
    formErr.textContent = '';
    const { items, problems } = parseList(list.input.value);
    if (!items.length && !problems.length) {
      setFieldError(list, 'Paste at least one URL, or load a file.');
      list.input.focus();
      return;
    }
    submit.disabled = true;
    const out = problems.map((p) => ({ ...p, status: 'failed' }));
    const chunks = Math.ceil(items.length / CHUNK);
    progress.hidden = false;
    progress.max = Math.max(1, items.length);
    progress.value = 0;
    for (let c = 0; c < chunks; c++) {
      const part = items.slice(c * CHUNK, (c + 1) * CHUNK);
      progressText.textContent = `Sending ${fmtNum(c * CHUNK + part.length)} of ${fmtNum(items.length)}…`;
      const body = part.map((it) => (it.alias ? { original_url: it.url, custom_alias: it.alias } : { original_url: it.url }));
      let res = null;
      let failure = null;
      for (let attempt = 0; attempt < 4; attempt++) {
        try {
          res = await api.bulk(body);
          break;
        } catch (err) {
          failure = err;
          if (err instanceof ApiError && err.status === 401) {
            submit.disabled = false;
            return;
          }
          if (!(err instanceof ApiError && err.status === 429) || attempt === 3) break;
          const wait = err.retryAfter || 5;
          progressText.textContent = `Rate limited; trying again in ${wait} s…`;
          await sleep(wait * 1000);
        }
      }
      part.forEach((it, i) => {
        const r = res && res.results[i];
        if (r && r.status === 'created') out.push({ ...it, status: 'created', short_code: r.short_code, short_url: r.short_url });
        else out.push({ ...it, status: 'failed', code: r ? r.code : failure && failure.code, error: r ? plain({ code: r.code, message: r.error }) : plain(failure) });
      });
      progress.value = Math.min(items.length, (c + 1) * CHUNK);
    }
    out.sort((a, b) => a.line - b.line);
    const created = out.filter((r) => r.status === 'created').length;
    progressText.textContent = `Done: ${fmtNum(created)} created, ${fmtNum(out.length - created)} failed.`;
    showResults(out, created);
    submit.disabled = false;
  }

  function showResults(rows, created) {
    const download = h('button.btn', {
      type: 'button',
      id: 'bulk-download',
      on: {
        click: () => {
          const lines = [['line', 'original_url', 'custom_alias', 'status', 'short_code', 'short_url', 'error'].join(',')];
          for (const r of rows) lines.push([r.line, r.url, r.alias, r.status, r.short_code, r.short_url, r.error].map(csvCell).join(','));
          downloadBlob(new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' }), 'kurz-bulk-results.csv');
        },
      },
    }, 'Download results (CSV)');
    const body = rows.slice(0, SHOWN).map((r) =>
      h('tr', { 'data-line': String(r.line), 'data-status': r.status },
        h('td.num', String(r.line)),
        h('td', h('span.break', r.url || '—')),
        h('td', r.status === 'created' ? h('span.badge.active', 'Created') : h('span.badge.failed', 'Error')),
        h('td', r.status === 'created'
          ? [h('a', { href: '#/links/' + encodeURIComponent(r.short_code) }, r.short_url), ' ', copyButton(r.short_url, `Copy ${r.short_url}`)]
          : h('span.break', r.error))));
    clear(results).append(
      h('h2#bulk-results-title', { tabindex: '-1' }, 'Results'),
      h('p', `${fmtNum(created)} created, ${fmtNum(rows.length - created)} failed.`, rows.length > SHOWN ? ` The first ${fmtNum(SHOWN)} lines are shown; the CSV has all of them.` : ''),
      h('div.actions', download),
      h('div.table-wrap', h('table#bulk-table',
        h('thead', h('tr', h('th.num', { scope: 'col' }, 'Line'), h('th', { scope: 'col' }, 'URL'), h('th', { scope: 'col' }, 'Result'), h('th', { scope: 'col' }, 'Short URL or error'))),
        h('tbody', body))));
    results.hidden = false;
    results.querySelector('h2').focus();
  }

  root.append(h('h1', { tabindex: '-1' }, 'Bulk create'), form, results);
}
