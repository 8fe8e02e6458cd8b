// Admin: create a user and show its API key once.
import { h, clear, field, setFieldError, copyButton } from '/app/dom.js';
import { api, plain, errorField } from '/app/api.js';

export function adminPage(root) {
  const email = field({ label: 'Email', name: 'email', type: 'email', attrs: { required: true, autocomplete: 'off', spellcheck: 'false' } });
  const tier = field({
    label: 'Tier',
    name: 'tier',
    hint: 'Sets the rate limit; admin can also create users.',
    control: h('select',
      h('option', { value: 'free' }, 'Free'),
      h('option', { value: 'pro' }, 'Pro'),
      h('option', { value: 'enterprise' }, 'Enterprise'),
      h('option', { value: 'admin' }, 'Admin')),
  });
  const formErr = h('p.form-error', { role: 'alert', tabindex: '-1' });
  const submit = h('button.btn.primary', { type: 'submit' }, 'Create user');
  const result = h('div#user-result');
  const form = h('form.card', { novalidate: true, on: { submit: onSubmit } }, h('div.grid2', email.wrap, tier.wrap), formErr, h('div.actions', submit));

  async function onSubmit(e) {
    e.preventDefault();
    setFieldError(email, '');
    formErr.textContent = '';
    clear(result);
    if (!email.input.value.trim()) {
      setFieldError(email, 'Enter the new user’s email address.');
      email.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const u = await api.createUser({ email: email.input.value.trim(), tier: tier.input.value });
      form.reset();
      result.append(h('section.card.success', { 'aria-labelledby': 'user-created-title' },
        h('h2#user-created-title', { tabindex: '-1' }, 'User created'),
        h('dl.props',
          h('dt', 'Email'), h('dd', u.email),
          h('dt', 'Tier'), h('dd', u.tier),
          h('dt', 'Rate limit'), h('dd', u.rate_limit ? `${u.rate_limit} requests per minute` : 'Unlimited'),
          h('dt', 'API key'), h('dd', h('code#new-api-key.break', u.api_key), ' ', copyButton(u.api_key, 'Copy API key'))),
        h('p.notice', 'This key is shown only once. Copy it now and give it to the user; kurz keeps only its hash.')));
      result.querySelector('h2').focus();
    } catch (err) {
      if (errorField(err) === 'email' || err.status === 409) {
        setFieldError(email, plain(err));
        email.input.focus();
      } else {
        formErr.textContent = plain(err);
        formErr.focus();
      }
    } finally {
      submit.disabled = false;
    }
  }

  root.append(h('h1', { tabindex: '-1' }, 'Admin'), h('h2', 'Create a user'), form, result);
}
