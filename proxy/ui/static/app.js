// Switchboard dashboard, part 3 of 3: session, navigation, keys, requests, providers, and the wiring.
'use strict';

// ---------------------------------------------------------------------------------------------------------
// session

function showLogin(message) {
  stopTimer();
  state.csrf = null;
  $('#app-view').hidden = true;
  $('#login-view').hidden = false;
  const err = $('#login-error');
  err.textContent = message || '';
  err.hidden = !message;
  $('#master-key').focus();
}

function showApp(session) {
  state.csrf = session.csrf;
  $('#login-view').hidden = true;
  $('#app-view').hidden = false;
  $('#session-info').textContent = 'Session until ' + new Date(session.expires_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  route();
}

async function login(event) {
  event.preventDefault();
  const input = $('#master-key');
  const button = $('#login-button');
  button.disabled = true;
  try {
    const session = await api('POST', '/ui/login', { master_key: input.value });
    input.value = '';
    showApp(session);
  } catch (e) {
    showLogin(e.message);
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try { await api('POST', '/ui/logout'); } catch (_) { /* the cookie is gone or invalid either way */ }
  showLogin('');
}

// ---------------------------------------------------------------------------------------------------------
// navigation

function route() {
  const tab = (location.hash || '#overview').slice(1);
  state.tab = ['overview', 'keys', 'requests', 'providers'].includes(tab) ? tab : 'overview';
  for (const a of document.querySelectorAll('.tabs a')) a.classList.toggle('on', a.dataset.tab === state.tab);
  for (const sec of document.querySelectorAll('.tab')) sec.hidden = sec.id !== 'tab-' + state.tab;
  refresh().catch((e) => toast(e.message, true));
  stopTimer();
  if (state.tab === 'requests' && $('#auto-refresh').checked) {
    state.timer = setInterval(() => loadRequests().catch(() => {}), REFRESH_MS);
  }
}

function stopTimer() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

async function refresh() {
  await loadKeys();
  if (state.tab === 'overview') await loadOverview();
  else if (state.tab === 'keys') renderKeys();
  else if (state.tab === 'requests') await loadRequests();
  else if (state.tab === 'providers') await loadProviders();
}

// ---------------------------------------------------------------------------------------------------------
// keys

async function loadKeys() {
  const data = await api('GET', '/admin/v1/keys');
  state.keys = data.data;
  for (const sel of [$('#chart-key'), $('#requests-key')]) {
    const current = sel.value;
    sel.replaceChildren(h('option', { value: '' }, 'All keys'),
      ...state.keys.map((k) => h('option', { value: k.id }, (k.name || 'unnamed') + ' · ' + k.key_prefix)));
    sel.value = state.keys.some((k) => k.id === current) ? current : '';
  }
}

function keyStatus(k) {
  if (k.disabled) return h('span', { class: 'badge off' }, 'disabled');
  if (k.expired) return h('span', { class: 'badge bad' }, 'expired');
  if (k.budget !== null && k.spend >= k.budget) return h('span', { class: 'badge warn' }, 'budget spent');
  return h('span', { class: 'badge ok' }, 'active');
}

function periodText(p) {
  return p ? ' / ' + p : ' lifetime';
}

function meter(spend, budget, small) {
  const ratio = budget > 0 ? spend / budget : (spend > 0 ? 1 : 0);
  const bar = h('div');
  // A sliver for any spend at all, so that "spent a little" differs from "spent nothing".
  bar.style.width = (spend > 0 ? Math.max(1, Math.min(100, ratio * 100)) : 0).toFixed(1) + '%';
  return h('div', { class: 'meter' + (small ? ' small' : '') + (ratio >= 1 ? ' over' : ratio >= 0.8 ? ' warn' : '') }, bar);
}

function renderKeys() {
  const body = $('#keys-table tbody');
  body.replaceChildren(...state.keys.map((k) => {
    const limits = [k.rpm && `${count(k.rpm)} rpm`, k.tpm && `${count(k.tpm)} tpm`, k.parallel && `${k.parallel} parallel`].filter(Boolean);
    const spend = k.budget === null
      ? h('td', {}, usd(k.spend), h('span', { class: 'sub' }, 'no budget'))
      : h('td', {}, `${usd(k.spend)} of ${usd(k.budget)}${periodText(k.period)}`, meter(k.spend, k.budget, true));
    return h('tr', { 'data-key-id': k.id, class: k.disabled || k.expired ? 'is-off' : null },
      h('td', {}, h('b', {}, k.name || 'unnamed'), h('span', { class: 'sub mono' }, k.key_prefix)),
      h('td', {}, keyStatus(k)),
      h('td', {}, k.models.length ? h('div', { class: 'chips' }, k.models.map((m) => h('span', { class: 'chip' }, m))) : h('span', { class: 'muted' }, 'all models')),
      spend,
      h('td', {}, limits.length ? limits.join(' · ') : h('span', { class: 'muted' }, 'none')),
      h('td', {}, k.expires_at ? dateOnly(k.expires_at) : h('span', { class: 'muted' }, 'never')),
      h('td', {}, k.last_used_at ? when(k.last_used_at) : h('span', { class: 'muted' }, 'never')),
      h('td', {}, h('div', { class: 'row-actions' },
        h('button', { type: 'button', class: 'link', 'data-action': 'edit', onclick: () => openKeyDialog(k) }, 'Edit'),
        h('button', { type: 'button', class: 'link', 'data-action': k.disabled ? 'enable' : 'disable', onclick: () => setDisabled(k, !k.disabled) }, k.disabled ? 'Enable' : 'Disable'),
        h('button', { type: 'button', class: 'link', 'data-action': 'rotate', onclick: () => rotateKey(k) }, 'Rotate'),
        h('button', { type: 'button', class: 'link bad', 'data-action': 'delete', onclick: () => deleteKey(k) }, 'Delete'))));
  }));
  $('#keys-empty').hidden = state.keys.length > 0;
}

let editing = null; // the key being edited, or null for a new one

function openKeyDialog(k) {
  editing = k || null;
  const form = $('#key-form');
  form.reset();
  $('#key-error').hidden = true;
  $('#key-dialog-title').textContent = k ? `Edit ${k.name || k.key_prefix}` : 'New key';
  $('#key-submit').textContent = k ? 'Save changes' : 'Create key';
  if (k) {
    form.elements.name.value = k.name;
    form.elements.models.value = k.models.join(', ');
    form.elements.budget.value = k.budget ?? '';
    form.elements.period.value = k.period ?? '';
    form.elements.rpm.value = k.rpm ?? '';
    form.elements.tpm.value = k.tpm ?? '';
    form.elements.parallel.value = k.parallel ?? '';
    form.elements.expires.value = k.expires_at ?? '';
  }
  $('#key-dialog').showModal();
}

function keyFormBody(form) {
  const num = (name, integer) => {
    const raw = form.elements[name].value.trim();
    if (raw === '') return null;
    return integer ? parseInt(raw, 10) : parseFloat(raw);
  };
  const body = {
    name: form.elements.name.value.trim(),
    models: form.elements.models.value.split(/[\s,]+/).filter(Boolean),
    budget: num('budget', false),
    period: form.elements.period.value || null,
    rpm: num('rpm', true),
    tpm: num('tpm', true),
    parallel: num('parallel', true),
  };
  if (body.budget === null) body.period = null;
  const expires = form.elements.expires.value.trim();
  if (!editing) {
    if (expires) body.expires = expires;
    for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
  } else if (expires !== (editing.expires_at ?? '')) {
    body.expires = expires || null;
  }
  return body;
}

async function submitKey(event) {
  event.preventDefault();
  const form = $('#key-form');
  const err = $('#key-error');
  err.hidden = true;
  try {
    const body = keyFormBody(form);
    if (editing) {
      await api('PATCH', `/admin/v1/keys/${encodeURIComponent(editing.id)}`, body);
      $('#key-dialog').close();
      toast('Key updated');
    } else {
      const created = await api('POST', '/admin/v1/keys', body);
      $('#key-dialog').close();
      showSecret(created.key, 'Your new key');
    }
    await loadKeys();
    renderKeys();
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  }
}

function showSecret(plaintext, title) {
  $('#secret-title').textContent = title;
  $('#secret-value').textContent = plaintext;
  $('#secret-base').textContent = location.origin + '/v1';
  $('#secret-dialog').showModal();
}

async function setDisabled(k, disabled) {
  try {
    await api('PATCH', `/admin/v1/keys/${encodeURIComponent(k.id)}`, { disabled });
    toast(disabled ? `${k.name || k.key_prefix} disabled: it is refused from now on` : `${k.name || k.key_prefix} enabled`);
    await loadKeys();
    renderKeys();
  } catch (e) { toast(e.message, true); }
}

function confirmThen(title, text, okLabel, action) {
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  const dialog = $('#confirm-dialog');
  dialog.returnValue = '';
  dialog.onclose = () => { if (dialog.returnValue === 'ok') action(); };
  $('#confirm-ok').value = 'ok';
  dialog.showModal();
}

function rotateKey(k) {
  confirmThen(`Rotate ${k.name || k.key_prefix}?`,
    'A new key is issued and the current one stops working at once. Clients using it must switch to the new key.',
    'Rotate key', async () => {
      try {
        const out = await api('POST', `/admin/v1/keys/${encodeURIComponent(k.id)}/rotate`);
        showSecret(out.key, `New key for ${k.name || k.key_prefix}`);
        await loadKeys();
        renderKeys();
      } catch (e) { toast(e.message, true); }
    });
}

function deleteKey(k) {
  confirmThen(`Delete ${k.name || k.key_prefix}?`,
    'The key stops working at once and cannot be restored. Its usage records stay in the ledger.',
    'Delete key', async () => {
      try {
        await api('DELETE', `/admin/v1/keys/${encodeURIComponent(k.id)}`);
        toast('Key deleted');
        await loadKeys();
        renderKeys();
      } catch (e) { toast(e.message, true); }
    });
}

// ---------------------------------------------------------------------------------------------------------
// requests

function statusBadge(status) {
  const cls = status < 300 ? 'ok' : status === 429 || status < 500 ? 'warn' : 'bad';
  return h('span', { class: 'badge ' + cls }, String(status));
}

async function loadRequests() {
  const q = new URLSearchParams({ limit: '100' });
  const key = $('#requests-key').value;
  if (key) q.set('key', key);
  const seq = ++state.requestsSeq;
  const data = await api('GET', '/admin/v1/requests?' + q);
  if (seq !== state.requestsSeq) return;
  const body = $('#requests-table tbody');
  body.replaceChildren(...data.data.map((r) => h('tr', { 'data-request-id': r.request_id },
    h('td', { title: r.time }, when(r.time)),
    h('td', {}, keyName(r.key_id)),
    h('td', {}, statusBadge(r.status)),
    h('td', {}, h('span', { class: 'mono' }, `${r.provider}/${r.model}`),
      r.attempts > 1 ? h('span', { class: 'sub' }, `${r.attempts} attempts`) : null),
    h('td', {}, r.surface + (r.stream ? ' · stream' : '')),
    h('td', { class: 'num' }, ms(r.latency_ms)),
    h('td', { class: 'num' }, ms(r.ttft_ms)),
    h('td', { class: 'num' }, `${count(r.input_tokens)} / ${count(r.output_tokens)}` + (r.estimated ? ' *' : '')),
    h('td', { class: 'num cost' }, usd(r.cost)))));
  $('#requests-empty').hidden = data.data.length > 0;
  $('#requests-updated').textContent = 'Updated ' + new Date().toLocaleTimeString() + (data.data.some((r) => r.estimated) ? ' · * tokens counted by Switchboard (the stream was cut)' : '');
}

// ---------------------------------------------------------------------------------------------------------
// providers

function providerRow(p) {
  return h('tr', { 'data-provider': p.provider },
    h('td', {}, h('b', {}, p.name), h('span', { class: 'sub mono' }, p.provider)),
    h('td', {}, p.usable ? h('span', { class: 'badge ok' }, p.in_use ? 'in use' : 'ready') : h('span', { class: 'badge off' }, 'not set up')),
    h('td', {}, p.usable ? h('span', { class: 'mono' }, p.source) : h('span', { class: 'fix' }, p.fix)));
}

async function loadProviders() {
  const data = await api('GET', '/admin/v1/providers');
  const ready = data.data.filter((p) => p.usable);
  const missing = data.data.filter((p) => !p.usable);
  $('#provider-problems').replaceChildren(...data.problems.map((p) => h('div', { class: 'problem' }, p)));
  $('#providers-summary').textContent = `${ready.length} of ${data.data.length} providers have credentials`;
  $('#providers-table tbody').replaceChildren(...ready.map(providerRow));
  $('#providers-none').hidden = ready.length > 0;
  $('#providers-missing-count').textContent = String(missing.length);
  $('#providers-missing tbody').replaceChildren(...missing.map(providerRow));
}

// ---------------------------------------------------------------------------------------------------------
// wiring

function init() {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  $('#new-key').addEventListener('click', () => openKeyDialog(null));
  $('#key-form').addEventListener('submit', submitKey);
  for (const b of document.querySelectorAll('[data-close]')) b.addEventListener('click', () => b.closest('dialog').close());
  // The plaintext leaves the page when its dialog closes: it is shown this once.
  $('#secret-dialog').addEventListener('close', () => { $('#secret-value').textContent = ''; });
  $('#secret-copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('#secret-value').textContent);
      toast('Copied');
    } catch (_) {
      window.getSelection().selectAllChildren($('#secret-value'));
      toast('Select and copy the key (the clipboard is not available here)');
    }
  });
  for (const b of document.querySelectorAll('[data-stack]')) {
    b.addEventListener('click', () => {
      state.stack = b.dataset.stack;
      for (const o of document.querySelectorAll('[data-stack]')) o.classList.toggle('on', o === b);
      for (const n of document.querySelectorAll('.stack-note')) n.textContent = 'stacked by ' + state.stack;
      loadOverview().catch((e) => toast(e.message, true));
    });
  }
  $('#chart-key').addEventListener('change', () => loadOverview().catch((e) => toast(e.message, true)));
  $('#chart-range').addEventListener('change', () => loadOverview().catch((e) => toast(e.message, true)));
  $('#overview-refresh').addEventListener('click', () => refresh().catch((e) => toast(e.message, true)));
  $('#requests-key').addEventListener('change', () => loadRequests().catch((e) => toast(e.message, true)));
  $('#requests-refresh').addEventListener('click', () => refresh().catch((e) => toast(e.message, true)));
  $('#providers-refresh').addEventListener('click', () => loadProviders().catch((e) => toast(e.message, true)));
  $('#auto-refresh').addEventListener('change', route);
  api('GET', '/ui/session')
    .then((session) => (session.authenticated ? showApp(session) : showLogin('')))
    .catch((e) => showLogin(e.message));
}

document.addEventListener('DOMContentLoaded', init);
