// Switchboard dashboard, part 1 of 3: state and helpers (DOM and SVG builders, formatting, the admin API call).
// Plain JavaScript, no build step, no third-party code; the three files share the page's global scope
// (classic scripts, loaded in order: core.js, charts.js, app.js).
// Every text that came from the server is set with textContent (never innerHTML): key names are user input.
'use strict';

const state = {
  csrf: null,
  keys: [],
  stack: 'model',
  tab: 'overview',
  timer: null,
  // Loads still in flight when a newer one starts are dropped, so an older answer never overwrites a newer one.
  overviewSeq: 0,
  requestsSeq: 0,
};
const REFRESH_MS = 5000;
const MAX_SERIES = 8; // series in a chart before the rest become "other"

// ---------------------------------------------------------------------------------------------------------
// small helpers

const $ = (sel) => document.querySelector(sel);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') el.textContent = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c) el.append(c);
  return el;
}

function usd(v) {
  if (v === null || v === undefined) return '–';
  if (v === 0) return '$0.00';
  if (Math.abs(v) >= 0.01) return '$' + v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  if (Math.abs(v) < 0.000001) return '<$0.000001';
  return '$' + v.toFixed(6).replace(/0+$/, '');
}

function count(n) {
  if (n === null || n === undefined) return '–';
  if (n >= 1e9) return (n / 1e9).toFixed(1).replace(/\.0$/, '') + 'B';
  if (n >= 1e6) return (n / 1e6).toFixed(1).replace(/\.0$/, '') + 'M';
  if (n >= 1e4) return (n / 1e3).toFixed(1).replace(/\.0$/, '') + 'k';
  return n.toLocaleString('en-US');
}

function ms(v) {
  if (v === null || v === undefined) return '–';
  return v >= 1000 ? (v / 1000).toFixed(2) + ' s' : Math.round(v) + ' ms';
}

function when(iso) {
  if (!iso) return 'never';
  const d = new Date(iso);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

function dateOnly(iso) {
  return iso ? new Date(iso).toLocaleDateString() : 'never';
}

function toast(message, isError) {
  const el = $('#toast');
  el.textContent = message;
  el.classList.toggle('error', !!isError);
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, isError ? 6000 : 3000);
}

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  // Switchboard takes POST bodies as JSON only (its guard against cross-site forms): always send one.
  if (method !== 'GET') {
    headers['content-type'] = 'application/json';
    if (body === undefined) body = {};
    if (state.csrf) headers['x-csrf-token'] = state.csrf;
  }
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (!resp.ok) {
    const message = (data && data.error && data.error.message) || `HTTP ${resp.status}`;
    if (resp.status === 401 && path.startsWith('/admin/')) showLogin('Your session has ended; log in again.');
    throw new ApiError(message, resp.status);
  }
  return data;
}

function keyName(id) {
  if (!id) return '(master key)';
  const k = state.keys.find((x) => x.id === id);
  return k ? (k.name || k.key_prefix) : id;
}
