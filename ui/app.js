// kurz web interface: the shell, hash router, sign-in and the anonymous form.
import { h, clear, field, setFieldError, copyButton, toast } from '/app/dom.js';
import { api, session, signIn, signOut, onSessionChange, resume, plain, errorField, ApiError } from '/app/api.js';
import { createPage } from '/app/create.js';
import { linksPage } from '/app/links.js';
import { linkPage } from '/app/link.js';
import { bulkPage } from '/app/bulk.js';
import { adminPage } from '/app/admin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let cleanup = null;
let returnTo = null;
let signInNotice = null;
let navigated = false;

const routes = [
  { re: /^\/?$/, page: homePage, title: 'Shorten a link' },
  { re: /^\/signin$/, page: signInPage, title: 'Sign in' },
  { re: /^\/new$/, page: createPage, title: 'New link', auth: true },
  { re: /^\/links$/, page: linksPage, title: 'My links', auth: true },
  { re: /^\/links\/([A-Za-z0-9_-]+)$/, page: linkPage, title: 'Link', auth: true },
  { re: /^\/bulk$/, page: bulkPage, title: 'Bulk create', auth: true },
  { re: /^\/admin$/, page: adminPage, title: 'Admin', auth: true, admin: true },
];

export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  return { path, query: new URLSearchParams(qs || '') };
}

function renderNav(path) {
  const s = session();
  const item = (href, label) =>
    h('li', h('a', { href, 'aria-current': '#' + path === href || (href === '#/links' && path.startsWith('/links/')) ? 'page' : null }, label));
  const items = s
    ? [
        item('#/links', 'My links'),
        item('#/new', 'New link'),
        item('#/bulk', 'Bulk'),
        s.tier === 'admin' ? item('#/admin', 'Admin') : null,
        h('li', h('button.btn.link-like', { type: 'button', id: 'signout', on: { click: () => signOut('signed-out') } }, 'Sign out')),
      ]
    : [item('#/', 'Shorten'), item('#/signin', 'Sign in')];
  clear(nav).append(h('ul', items));
}

function render() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* page already gone */
    }
    cleanup = null;
  }
  const { path, query } = parseHash();
  const s = session();
  let route = routes.find((r) => r.re.test(path));
  if (!route) {
    renderNav(path);
    clear(main).append(h('h1', { tabindex: '-1' }, 'Page not found'), h('p', h('a', { href: '#/' }, 'Back to the start page')));
    document.title = 'Not found · kurz';
    return;
  }
  if (route.auth && !s) {
    returnTo = '#' + path + (query.toString() ? '?' + query : '');
    location.replace('#/signin');
    return;
  }
  if (route.admin && s.tier !== 'admin') {
    location.replace('#/links');
    return;
  }
  if (path === '/' && s) {
    location.replace('#/links');
    return;
  }
  renderNav(path);
  clear(main);
  document.title = route.title + ' · kurz';
  const params = path.match(route.re).slice(1).map(decodeURIComponent);
  cleanup = route.page(main, { params, query, session: s, go }) || null;
  const h1 = main.querySelector('h1');
  // After a navigation, the new page starts at its top and focus moves to its
  // heading (not on first load).
  if (navigated) window.scrollTo(0, 0);
  if (h1 && navigated) h1.focus({ preventScroll: true });
  if (!navigated) performance.mark('kurz-ready');
  navigated = true;
}

function homePage(root) {
  const url = field({ label: 'Long URL', name: 'url', type: 'url', attrs: { required: true, placeholder: 'https://example.com/a/long/path', autocomplete: 'url', inputmode: 'url' } });
  const formErr = h('p.form-error', { role: 'alert' });
  const result = h('div.result', { 'aria-live': 'polite' });
  const submit = h('button.btn.primary', { type: 'submit' }, 'Shorten');
  const form = h('form.card', { novalidate: true, on: { submit: onSubmit } }, url.wrap, formErr, h('div.actions', submit));
  async function onSubmit(e) {
    e.preventDefault();
    setFieldError(url, '');
    formErr.textContent = '';
    clear(result);
    if (!url.input.value.trim()) {
      setFieldError(url, 'Enter the URL to shorten.');
      url.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const link = await api.create({ original_url: url.input.value.trim() });
      result.append(
        h('p', 'Your short link:'),
        h('p.short-result', h('a', { href: link.short_url, rel: 'noopener noreferrer', target: '_blank' }, link.short_url), ' ', copyButton(link.short_url, 'Copy short URL')),
      );
      url.input.value = '';
    } catch (err) {
      if (errorField(err) === 'url') {
        setFieldError(url, plain(err));
        url.input.focus();
      } else if (err.status === 401 || err.status === 403) {
        // Anonymous creation is off: the API says so.
        formErr.replaceChildren(plain(err), ' ', h('a', { href: '#/signin' }, 'Sign in to create links.'));
      } else {
        formErr.textContent = plain(err);
      }
    } finally {
      submit.disabled = false;
    }
  }
  root.append(
    h('h1', { tabindex: '-1' }, 'Shorten a link'),
    h('p.lead', 'Paste a long URL to get a short one. ', h('a', { href: '#/signin' }, 'Sign in'), ' with an API key to manage your links and see their clicks.'),
    form,
    result,
  );
}

function signInPage(root) {
  if (session()) {
    location.replace('#/links');
    return;
  }
  const key = field({
    label: 'API key',
    name: 'api_key',
    type: 'password',
    hint: 'The key is exchanged for a short-lived token and is not kept in the browser.',
    attrs: { required: true, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off' },
  });
  const submit = h('button.btn.primary', { type: 'submit' }, 'Sign in');
  const notice = signInNotice ? h('p.notice', { role: 'status' }, signInNotice) : null;
  signInNotice = null;
  const form = h('form.card', { method: 'post', novalidate: true, on: { submit: onSubmit } }, key.wrap, h('div.actions', submit));
  async function onSubmit(e) {
    e.preventDefault();
    setFieldError(key, '');
    const value = key.input.value.trim();
    if (!value) {
      setFieldError(key, 'Enter your API key.');
      key.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await signIn(value);
      key.input.value = '';
    } catch (err) {
      key.input.value = '';
      setFieldError(key, err.status === 401 ? 'This API key was not accepted. Check it and try again.' : plain(err));
      key.input.focus();
      submit.disabled = false;
    }
  }
  root.append(h('h1', { tabindex: '-1' }, 'Sign in'), notice, form, h('p', h('a', { href: '#/' }, 'Shorten a link without signing in')));
}

onSessionChange((reason) => {
  if (reason === 'signed-in') {
    const to = returnTo || '#/links';
    returnTo = null;
    go(to);
    return;
  }
  if (reason === 'expired' || reason === 'signed-out') {
    if (reason === 'expired') {
      signInNotice = 'Your session has ended. Please sign in again.';
      const { path, query } = parseHash();
      if (path !== '/signin') returnTo = '#' + path + (query.toString() ? '?' + query : '');
    } else {
      signInNotice = 'You are signed out.';
      returnTo = null;
    }
    go('#/signin');
    if (reason === 'signed-out') toast('Signed out');
  }
});

document.getElementById('skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});
window.addEventListener('hashchange', render);
window.addEventListener('unhandledrejection', (e) => {
  if (e.reason instanceof ApiError && e.reason.status === 401) e.preventDefault();
});
if (session()) resume();
render();
