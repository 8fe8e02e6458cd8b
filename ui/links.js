// My links: the table, search and order, cursor paging, and the row actions
// (edit, disable/enable, delete) that the link page reuses.
import { h, clear, when, fmtNum, copyButton, toast, field, setFieldError, openDialog } from '/app/dom.js';
import { api, plain, ApiError } from '/app/api.js';
import { expiryControl, showApiError, localDate } from '/app/create.js';

// 100 is the list API's maximum page.
const PAGE_SIZES = [25, 50, 100];

export function status(link) {
  if (!link.is_active) return { key: 'disabled', label: 'Disabled' };
  if (link.expires_at && new Date(link.expires_at) <= new Date()) return { key: 'expired', label: 'Expired' };
  return { key: 'active', label: 'Active' };
}

export function statusBadge(link) {
  const s = status(link);
  return h('span.badge.' + s.key, s.label);
}

// Edit target, expiry and active in a dialog; resolves with the updated link or null.
export function editLink(link) {
  return new Promise((resolve) => {
    let updated = null;
    const url = field({ label: 'Target URL', name: 'url', type: 'url', attrs: { required: true, value: link.original_url, inputmode: 'url' } });
    const expiry = expiryControl({ withDays: false, current: link.expires_at });
    const active = h('input', { type: 'checkbox', id: 'edit-active', name: 'is_active', checked: link.is_active });
    const formErr = h('p.form-error', { role: 'alert', tabindex: '-1' });
    const save = h('button.btn.primary', { type: 'submit', form: 'edit-form' }, 'Save');
    const cancel = h('button.btn', { type: 'button', on: { click: () => d.close() } }, 'Cancel');
    const form = h('form#edit-form', { novalidate: true, on: { submit: onSubmit } },
      h('p', 'Short link ', h('strong', link.short_code)),
      url.wrap,
      expiry.wrap,
      h('div.field.check', active, h('label', { for: 'edit-active' }, 'Active (redirects work)')),
      formErr);
    const d = openDialog({ title: 'Edit link', body: form, actions: [cancel, save], initial: url.input, onClose: () => resolve(updated) });
    async function onSubmit(e) {
      e.preventDefault();
      setFieldError(url, '');
      setFieldError(expiry, '');
      formErr.textContent = '';
      const body = {};
      const target = url.input.value.trim();
      if (target !== link.original_url) body.original_url = target;
      let ex;
      try {
        ex = expiry.value();
      } catch (err) {
        setFieldError(expiry, err.message);
        expiry.input.focus();
        return;
      }
      if (ex.never) {
        if (link.expires_at) body.expires_at = null;
      } else if (!link.expires_at || expiry.raw().date !== localDate(new Date(link.expires_at))) {
        body.expires_at = ex.expires_at; // an unchanged date keeps the link's exact time
      }
      if (active.checked !== link.is_active) body.is_active = active.checked;
      if (!Object.keys(body).length) {
        d.close();
        return;
      }
      save.disabled = true;
      try {
        const res = await api.update(link.short_code, body);
        updated = res.url;
        toast('Saved ' + link.short_code);
        d.close();
      } catch (err) {
        showApiError(err, { url, expiry }, formErr);
      } finally {
        save.disabled = false;
      }
    }
  });
}

// Asks first; resolves true once the link is deleted.
export function deleteLink(link) {
  return new Promise((resolve) => {
    let done = false;
    const err = h('p.form-error', { role: 'alert' });
    const cancel = h('button.btn', { type: 'button', on: { click: () => d.close() } }, 'Cancel');
    const confirm = h('button.btn.danger', {
      type: 'button',
      on: {
        click: async () => {
          confirm.disabled = true;
          try {
            await api.remove(link.short_code);
            done = true;
            toast('Deleted ' + link.short_code);
            d.close();
          } catch (e) {
            err.textContent = plain(e);
            confirm.disabled = false;
          }
        },
      },
    }, 'Delete');
    const d = openDialog({
      title: 'Delete this link?',
      body: h('div',
        h('p', h('strong', link.short_url)),
        h('p', 'It will stop redirecting at once, its clicks are no longer shown, and the code is never handed out again. This cannot be undone.'),
        err),
      actions: [cancel, confirm],
      initial: cancel,
      onClose: () => resolve(done),
    });
  });
}

export async function toggleActive(link) {
  const res = await api.update(link.short_code, { is_active: !link.is_active });
  toast((res.url.is_active ? 'Enabled ' : 'Disabled ') + link.short_code);
  return res.url;
}

export function linksPage(root, { query }) {
  const state = {
    q: query.get('q') || '',
    order: query.get('order') === 'asc' ? 'asc' : 'desc',
    limit: PAGE_SIZES.includes(Number(query.get('limit'))) ? Number(query.get('limit')) : 25,
    cursors: [null], // cursors[i] fetches page i
    page: 0,
    next: null,
    seq: 0,
    abort: null,
  };

  const search = h('input', { type: 'search', id: 'links-q', name: 'q', value: state.q, placeholder: 'Alias or part of the URL', autocomplete: 'off', spellcheck: 'false' });
  const order = h('select', { id: 'links-order', name: 'order' },
    h('option', { value: 'desc' }, 'Newest first'),
    h('option', { value: 'asc' }, 'Oldest first'));
  order.value = state.order;
  const size = h('select', { id: 'links-size', name: 'limit' }, PAGE_SIZES.map((n) => h('option', { value: String(n) }, `${n} per page`)));
  size.value = String(state.limit);
  const tbody = h('tbody');
  const table = h('table.links', { 'aria-describedby': 'links-status' },
    h('caption.visually-hidden', 'My links'),
    h('thead', h('tr',
      h('th', { scope: 'col' }, 'Short URL'),
      h('th', { scope: 'col' }, 'Target'),
      h('th', { scope: 'col' }, 'Created'),
      h('th', { scope: 'col' }, 'Expires'),
      h('th', { scope: 'col' }, 'Status'),
      h('th.num', { scope: 'col' }, 'Clicks'),
      h('th', { scope: 'col' }, h('span.visually-hidden', 'Actions')))),
    tbody);
  const statusLine = h('p#links-status.muted', { role: 'status' });
  const prev = h('button.btn', { type: 'button', id: 'links-prev', on: { click: () => turn(-1) } }, '← Previous');
  const next = h('button.btn', { type: 'button', id: 'links-next', on: { click: () => turn(1) } }, 'Next →');
  const pageLabel = h('span#links-page.muted');
  const errBox = h('p.form-error', { role: 'alert' });

  let debounce;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => restart(), 300);
  });
  order.addEventListener('change', () => restart());
  size.addEventListener('change', () => restart());

  function restart() {
    state.q = search.value.trim();
    state.order = order.value;
    state.limit = Number(size.value);
    state.cursors = [null];
    state.page = 0;
    const p = new URLSearchParams();
    if (state.q) p.set('q', state.q);
    if (state.order !== 'desc') p.set('order', state.order);
    if (state.limit !== 25) p.set('limit', String(state.limit));
    history.replaceState(null, '', '#/links' + (p.toString() ? '?' + p : ''));
    load();
  }

  function turn(delta) {
    if (delta > 0 && !state.next) return;
    if (delta < 0 && state.page === 0) return;
    if (delta > 0) state.cursors[state.page + 1] = state.next;
    state.page += delta;
    load();
  }

  async function load() {
    const seq = ++state.seq;
    if (state.abort) state.abort.abort();
    state.abort = new AbortController();
    table.setAttribute('aria-busy', 'true');
    prev.disabled = true;
    next.disabled = true;
    errBox.textContent = '';
    try {
      const res = await api.list({ limit: state.limit, cursor: state.cursors[state.page], q: state.q, order: state.order }, state.abort.signal);
      if (seq !== state.seq) return;
      state.next = res.next_cursor || null;
      renderRows(res.items);
      const first = state.page * state.limit + 1;
      statusLine.textContent = res.items.length
        ? `Links ${fmtNum(first)}–${fmtNum(first + res.items.length - 1)}${state.q ? ` matching “${state.q}”` : ''}`
        : state.q ? `No link matches “${state.q}”.` : state.page ? 'No more links.' : 'You have no links yet.';
      pageLabel.textContent = `Page ${state.page + 1}`;
    } catch (err) {
      if (err.name === 'AbortError' || seq !== state.seq) return;
      if (!(err instanceof ApiError && err.status === 401)) errBox.textContent = plain(err);
    } finally {
      if (seq === state.seq) {
        table.removeAttribute('aria-busy');
        prev.disabled = state.page === 0;
        next.disabled = !state.next;
      }
    }
  }

  function renderRows(items) {
    const frag = document.createDocumentFragment();
    if (!items.length) {
      frag.append(h('tr.empty', h('td', { colspan: '7' }, state.q ? 'No match.' : 'No links here.', ' ', h('a', { href: '#/new' }, 'Create a link'))));
    }
    for (const link of items) frag.append(row(link));
    tbody.replaceChildren(frag);
  }

  function row(link) {
    const tr = h('tr', { 'data-code': link.short_code });
    const fill = (l) => {
      link = l;
      const toggle = h('button.btn.small', { type: 'button', 'data-action': 'toggle', 'aria-label': `${l.is_active ? 'Disable' : 'Enable'} ${l.short_code}`, on: { click: onToggle } }, l.is_active ? 'Disable' : 'Enable');
      tr.replaceChildren(
        h('td.short', { 'data-label': 'Short URL' }, h('span.cell',
          h('a', { href: '#/links/' + encodeURIComponent(l.short_code), 'aria-label': `${l.short_code}: details and clicks` }, l.short_code),
          ' ',
          copyButton(l.short_url, `Copy short URL ${l.short_url}`))),
        h('td.target', { 'data-label': 'Target' }, h('span.clip', { title: l.original_url }, l.original_url)),
        h('td.date', { 'data-label': 'Created' }, when(l.created_at, true)),
        h('td.date', { 'data-label': 'Expires' }, l.expires_at ? when(l.expires_at, true) : h('span.muted', 'Never')),
        h('td', { 'data-label': 'Status' }, statusBadge(l)),
        h('td.num', { 'data-label': 'Clicks' }, fmtNum(l.click_count)),
        h('td.row-actions', { 'data-label': 'Actions' },
          h('button.btn.small', { type: 'button', 'data-action': 'edit', 'aria-label': `Edit ${l.short_code}`, on: { click: onEdit } }, 'Edit'),
          toggle,
          h('button.btn.small.danger-outline', { type: 'button', 'data-action': 'delete', 'aria-label': `Delete ${l.short_code}`, on: { click: onDelete } }, 'Delete')));
    };
    async function onEdit() {
      const updated = await editLink(link);
      if (updated) {
        fill(updated);
        tr.querySelector('[data-action=edit]').focus();
      }
    }
    async function onToggle(e) {
      e.target.disabled = true;
      try {
        fill(await toggleActive(link));
        tr.querySelector('[data-action=toggle]').focus();
      } catch (err) {
        errBox.textContent = plain(err);
        e.target.disabled = false;
      }
    }
    async function onDelete() {
      if (await deleteLink(link)) {
        load();
        root.querySelector('h1').focus();
      }
    }
    fill(link);
    return tr;
  }

  root.append(
    h('div.page-head', h('h1', { tabindex: '-1' }, 'My links'), h('a.btn.primary', { href: '#/new' }, 'New link')),
    h('form.toolbar', { role: 'search', on: { submit: (e) => { e.preventDefault(); clearTimeout(debounce); restart(); } } },
      h('div.field', h('label', { for: 'links-q' }, 'Search'), search),
      h('div.field', h('label', { for: 'links-order' }, 'Order'), order),
      h('div.field', h('label', { for: 'links-size' }, 'Page size'), size)),
    errBox,
    statusLine,
    h('div.table-wrap', table),
    h('nav.pager', { 'aria-label': 'Pages' }, prev, pageLabel, next));
  load();
  return () => {
    clearTimeout(debounce);
    if (state.abort) state.abort.abort();
  };
}
