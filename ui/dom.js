// DOM helpers. Every string from users or the API goes in through textContent or
// attributes set one by one: nothing here parses HTML.

let uid = 0;
export const nextId = (prefix) => `${prefix}-${++uid}`;

// h('tag.class#id', {attr: value, on: {click: fn}}, ...children)
export function h(spec, attrs, ...children) {
  const m = /^([a-z0-9-]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
  const el = document.createElement(m[1] || 'div');
  for (const part of m[2].match(/[.#][\w-]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'text') el.textContent = v;
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const df = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
// A date and time (or only the date, with the time in the tooltip).
export function when(iso, dateOnly = false) {
  if (!iso) return h('span.muted', '—');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: dtf.format(d) }, (dateOnly ? df : dtf).format(d));
}

export const fmtNum = (n) => new Intl.NumberFormat().format(n);

// Announces a short message to screen readers and shows it briefly.
let toastTimer;
export function toast(msg) {
  const el = document.getElementById('toast');
  el.textContent = msg;
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 2500);
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Without the async clipboard (plain http on a remote host): a hidden field.
    const ta = h('textarea.offscreen', { readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand('copy');
    ta.remove();
  }
  toast('Copied ' + text);
}

export function copyButton(text, label) {
  return h('button.btn.small.copy', {
    type: 'button',
    'aria-label': label || `Copy ${text}`,
    title: 'Copy',
    on: { click: () => copyText(text) },
  }, 'Copy');
}

// A labelled form field with a slot for its error message.
export function field({ label, name, type = 'text', hint, attrs = {}, control }) {
  const id = nextId(name);
  const errId = id + '-err';
  const hintId = hint ? id + '-hint' : null;
  const input = control || h(type === 'textarea' ? 'textarea' : 'input', { type: type === 'textarea' ? null : type, ...attrs });
  input.id = id;
  input.name = name;
  const describedBy = [hintId, errId].filter(Boolean).join(' ');
  input.setAttribute('aria-describedby', describedBy);
  const err = h('p.field-error', { id: errId, 'data-error-for': name });
  const wrap = h('div.field', { 'data-field': name },
    h('label', { for: id }, label),
    hint ? h('p.hint', { id: hintId }, hint) : null,
    input,
    err);
  return { wrap, input, err };
}

export function setFieldError(f, msg) {
  f.err.textContent = msg || '';
  if (msg) f.input.setAttribute('aria-invalid', 'true');
  else f.input.removeAttribute('aria-invalid');
}

export function downloadBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// A modal <dialog>: focus goes to `initial` on open and back to the opener on close.
export function openDialog({ title, body, actions, initial, onClose }) {
  const opener = document.activeElement;
  const titleId = nextId('dlg-title');
  const dlg = h('dialog.dialog', { 'aria-labelledby': titleId },
    h('h2', { id: titleId }, title),
    body,
    h('div.actions', actions));
  document.body.append(dlg);
  const close = () => dlg.close();
  dlg.addEventListener('close', () => {
    dlg.remove();
    if (onClose) onClose();
    const target = opener && opener.isConnected ? opener : document.querySelector('main h1');
    if (target) target.focus();
  });
  dlg.showModal();
  if (initial) initial.focus();
  return { dlg, close };
}
