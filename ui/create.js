// The create form, and the expiry control it shares with the edit dialog.
import { h, clear, field, setFieldError, copyButton, nextId } from '/app/dom.js';
import { api, plain, errorField, randomKey } from '/app/api.js';

const pad = (n) => String(n).padStart(2, '0');
export const localDate = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;

// A date from <input type=date> means "until the end of that day", local time.
export function endOfDay(value) {
  const [y, m, d] = value.split('-').map(Number);
  return new Date(y, m - 1, d, 23, 59, 59).toISOString();
}

// Expiry: never, after N days (create only), or at the end of a date.
export function expiryControl({ withDays = true, current = null } = {}) {
  const id = nextId('expiry');
  const errId = id + '-err';
  const mode = h('select', { id: id + '-mode', name: 'expiry_mode', 'aria-describedby': errId },
    h('option', { value: 'never' }, 'Never expires'),
    withDays ? h('option', { value: 'days' }, 'After a number of days') : null,
    h('option', { value: 'date' }, 'At the end of a date'));
  const days = h('input', { type: 'number', id: id + '-days', name: 'expires_in_days', min: '1', max: '3650', step: '1', inputmode: 'numeric', 'aria-describedby': errId });
  const date = h('input', { type: 'date', id: id + '-date', name: 'expires_on', min: localDate(new Date()), 'aria-describedby': errId });
  const daysWrap = h('div.field.sub', { hidden: true }, h('label', { for: days.id }, 'Days until it expires'), days);
  const dateWrap = h('div.field.sub', { hidden: true }, h('label', { for: date.id }, 'Last day it works'), date);
  const err = h('p.field-error', { id: errId, 'data-error-for': 'expiry' });
  if (current) {
    mode.value = 'date';
    date.value = localDate(new Date(current));
  }
  const sync = () => {
    daysWrap.hidden = mode.value !== 'days';
    dateWrap.hidden = mode.value !== 'date';
  };
  mode.addEventListener('change', sync);
  sync();
  const wrap = h('fieldset.field.expiry', { 'data-field': 'expiry' },
    h('legend', 'Expiry'),
    h('label.visually-hidden', { for: mode.id }, 'When the link expires'),
    mode, daysWrap, dateWrap, err);
  return {
    wrap,
    err,
    get input() {
      return mode.value === 'days' ? days : mode.value === 'date' ? date : mode;
    },
    raw: () => ({ mode: mode.value, days: days.value, date: date.value }),
    // The request fields; throws a message for the user when incomplete.
    value() {
      if (mode.value === 'days') {
        const n = Number(days.value);
        if (!days.value || !Number.isInteger(n)) throw new Error('Enter a whole number of days, from 1 to 3650.');
        return { expires_in_days: n };
      }
      if (mode.value === 'date') {
        if (!date.value) throw new Error('Choose the last day the link should work.');
        return { expires_at: endOfDay(date.value) };
      }
      return { never: true };
    },
  };
}

export function showApiError(err, fields, formErr) {
  const name = errorField(err);
  const f = name && fields[name];
  if (f) {
    setFieldError(f, plain(err));
    f.input.focus();
  } else {
    formErr.textContent = plain(err);
    formErr.focus();
  }
}

export function createPage(root) {
  const url = field({ label: 'Long URL', name: 'url', type: 'url', attrs: { required: true, placeholder: 'https://example.com/a/long/path', autocomplete: 'url', inputmode: 'url' } });
  const alias = field({
    label: 'Alias (optional)',
    name: 'alias',
    hint: '4 to 10 letters, digits, - or _. Leave empty for a random code.',
    attrs: { autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', maxlength: '64' },
  });
  const expiry = expiryControl();
  const redirect = field({
    label: 'Redirect type',
    name: 'redirect_type',
    control: h('select',
      h('option', { value: '302' }, '302 Found: temporary (default)'),
      h('option', { value: '301' }, '301 Moved Permanently: browsers may cache it')),
  });
  const campaign = field({ label: 'Campaign', name: 'campaign', attrs: { autocomplete: 'off', maxlength: '200' } });
  const source = field({ label: 'Source', name: 'source', attrs: { autocomplete: 'off', maxlength: '200' } });
  const fields = { url, alias, expiry, redirect_type: redirect, campaign, source };
  const formErr = h('p.form-error', { role: 'alert', tabindex: '-1' });
  const submit = h('button.btn.primary', { type: 'submit' }, 'Create short link');
  const result = h('div', { 'aria-live': 'polite' });
  let idem = null;
  const form = h('form.card.create-form', { novalidate: true, on: { submit: onSubmit, input: () => (idem = null) } },
    url.wrap,
    h('div.grid2', alias.wrap, redirect.wrap),
    expiry.wrap,
    h('fieldset.field', h('legend', 'Labels (optional)'), h('div.grid2', campaign.wrap, source.wrap)),
    formErr,
    h('div.actions', submit));

  async function onSubmit(e) {
    e.preventDefault();
    for (const f of Object.values(fields)) setFieldError(f, '');
    formErr.textContent = '';
    clear(result);
    const body = { original_url: url.input.value.trim() };
    if (!body.original_url) {
      setFieldError(url, 'Enter the URL to shorten.');
      url.input.focus();
      return;
    }
    if (alias.input.value.trim()) body.custom_alias = alias.input.value.trim();
    try {
      const ex = expiry.value();
      if (!ex.never) Object.assign(body, ex);
    } catch (err) {
      setFieldError(expiry, err.message);
      expiry.input.focus();
      return;
    }
    body.redirect_type = Number(redirect.input.value);
    const metadata = {};
    if (campaign.input.value.trim()) metadata.campaign = campaign.input.value.trim();
    if (source.input.value.trim()) metadata.source = source.input.value.trim();
    if (Object.keys(metadata).length) body.metadata = metadata;
    // One key per filled-in form: a double submit creates one link.
    idem = idem || randomKey();
    submit.disabled = true;
    try {
      const link = await api.create(body, idem);
      idem = null;
      form.reset();
      expiry.wrap.querySelector('select').dispatchEvent(new Event('change'));
      result.append(h('section.card.success', { 'aria-labelledby': 'created-title' },
        h('h2#created-title', 'Link created'),
        h('p.short-result', h('a', { href: link.short_url, target: '_blank', rel: 'noopener noreferrer' }, link.short_url), ' ', copyButton(link.short_url, 'Copy short URL')),
        h('p.target', 'Goes to ', h('span.break', link.original_url)),
        h('p', h('a', { href: '#/links/' + encodeURIComponent(link.short_code) }, 'See its page: QR code and clicks'))));
      result.querySelector('h2').setAttribute('tabindex', '-1');
      result.querySelector('h2').focus();
    } catch (err) {
      showApiError(err, fields, formErr);
    } finally {
      submit.disabled = false;
    }
  }

  root.append(h('h1', { tabindex: '-1' }, 'New link'), result, form);
}
