// Switchboard dashboard, part 2 of 3: the overview (stats, stacked SVG charts per day, spend against budget).
'use strict';

async function loadOverview() {
  const key = $('#chart-key').value;
  const since = $('#chart-range').value;
  const q = new URLSearchParams({ by: state.stack, since });
  if (key) q.set('key', key);
  const seq = ++state.overviewSeq;
  const daily = await api('GET', '/admin/v1/usage/daily?' + q);
  if (seq !== state.overviewSeq) return; // a newer load (another filter) started meanwhile: it draws
  const rows = daily.data;
  const total = (f) => rows.reduce((a, r) => a + f(r), 0);
  $('#stat-spend').textContent = usd(total((r) => r.cost));
  $('#stat-requests').textContent = count(total((r) => r.requests));
  $('#stat-tokens').textContent = count(total((r) => r.input_tokens + r.output_tokens));
  const active = state.keys.filter((k) => !k.disabled && !k.expired).length;
  $('#stat-keys').textContent = `${active} / ${state.keys.length}`;
  const days = dayRange(daily.since);
  const chosen = state.keys.find((k) => k.id === key);
  drawChart($('#spend-chart'), $('#spend-legend'), days, rows, (r) => r.cost, usd, chosen ? budgetLine(chosen) : null);
  drawChart($('#tokens-chart'), $('#tokens-legend'), days, rows, (r) => r.input_tokens + r.output_tokens, count, null);
  renderBudgets();
}

function dayRange(sinceIso) {
  const out = [];
  const start = new Date(sinceIso);
  const d = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate()));
  const end = new Date();
  while (d <= end) {
    out.push(d.toISOString().slice(0, 10));
    d.setUTCDate(d.getUTCDate() + 1);
  }
  return out;
}

// The daily equivalent of a key's budget, drawn across the spend chart.
function budgetLine(k) {
  if (k.budget === null) return null;
  if (k.period === 'day') return { value: k.budget, label: `budget ${usd(k.budget)}/day` };
  if (k.period === 'week') return { value: k.budget / 7, label: `≈ ${usd(k.budget / 7)}/day (budget ${usd(k.budget)}/week)` };
  if (k.period === 'month') return { value: k.budget / 30, label: `≈ ${usd(k.budget / 30)}/day (budget ${usd(k.budget)}/month)` };
  return { value: k.budget, label: `budget ${usd(k.budget)} (lifetime)` };
}

// A round step for four grid lines reaching at least v (whole numbers for counts).
function niceStep(v, whole) {
  if (v <= 0) return whole ? 1 : 0.25;
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) {
    const step = m * exp;
    if (step >= v && (!whole || Number.isInteger(step))) return step;
  }
  return 10 * exp;
}

function drawChart(box, legend, days, rows, value, fmt, budget) {
  const totals = new Map();
  for (const r of rows) totals.set(r.group, (totals.get(r.group) || 0) + value(r));
  let groups = [...totals.entries()].filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]).map(([g]) => g);
  const other = groups.length > MAX_SERIES ? new Set(groups.slice(MAX_SERIES - 1)) : new Set();
  if (other.size) groups = [...groups.slice(0, MAX_SERIES - 1), 'other'];
  const cells = new Map(); // day -> group -> value
  for (const r of rows) {
    const g = other.has(r.group) ? 'other' : r.group;
    if (!cells.has(r.day)) cells.set(r.day, new Map());
    const m = cells.get(r.day);
    m.set(g, (m.get(g) || 0) + value(r));
  }
  const dayTotal = (d) => [...(cells.get(d) || new Map()).values()].reduce((a, v) => a + v, 0);
  const peak = Math.max(0, ...days.map(dayTotal), budget ? budget.value : 0);
  const top = 4 * niceStep((peak * 1.05) / 4, fmt === count);

  const W = 640, H = 260, L = 62, R = 12, T = 14, B = 28;
  const plotW = W - L - R, plotH = H - T - B;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': box.id });
  const y = (v) => T + plotH - (v / top) * plotH;
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(s('text', { class: 'axis', x: L - 8, y: y(v) + 4, 'text-anchor': 'end', text: fmt(v) }));
  }
  const step = plotW / Math.max(1, days.length);
  const barW = Math.max(2, Math.min(28, step * 0.7));
  const labelEvery = Math.ceil(days.length / 8);
  days.forEach((d, i) => {
    const x = L + i * step + (step - barW) / 2;
    let base = 0;
    const m = cells.get(d) || new Map();
    groups.forEach((g, gi) => {
      const v = m.get(g) || 0;
      if (v <= 0) return;
      // At least 2px, so that a small day next to a large budget line still shows.
      const height = Math.max(2, y(base) - y(base + v));
      const rect = s('rect', { class: `bar swatch-${gi === groups.length - 1 && other.size ? 8 : gi}`, x, width: barW, y: y(base) - height, height, 'data-day': d, 'data-group': g },
        s('title', { text: `${d} · ${g}: ${fmt(v)}` }));
      svg.append(rect);
      base += v;
    });
    const last = i === days.length - 1;
    if ((i % labelEvery === 0 && days.length - 1 - i > labelEvery / 2) || last) {
      svg.append(s('text', { class: 'axis', x: L + i * step + step / 2, y: H - 8, 'text-anchor': 'middle', text: d.slice(5) }));
    }
  });
  if (budget) {
    svg.append(s('line', { class: 'budget', x1: L, x2: W - R, y1: y(budget.value), y2: y(budget.value) }));
    svg.append(s('text', { class: 'budget-label', x: W - R - 4, y: y(budget.value) - 5, 'text-anchor': 'end', text: budget.label }));
  }
  if (!groups.length) {
    svg.append(s('text', { class: 'empty-label', x: L + plotW / 2, y: T + plotH / 2, 'text-anchor': 'middle', text: 'No usage in this period yet' }));
  }
  box.replaceChildren(svg);
  const items = groups.map((g, gi) => h('span', { 'data-group': g }, h('i', { class: `swatch-${g === 'other' ? 8 : gi}` }), g));
  if (budget) items.push(h('span', {}, h('i', { class: 'budget-key' }), 'budget'));
  legend.replaceChildren(...items);
}

function renderBudgets() {
  const box = $('#budgets');
  const keys = [...state.keys].sort((a, b) => (b.budget === null) - (a.budget === null) || b.spend - a.spend);
  if (!keys.length) {
    box.replaceChildren(h('p', { class: 'empty' }, 'No keys yet.'));
    return;
  }
  box.replaceChildren(...keys.map((k) => h('div', { class: 'budget-row', 'data-key-id': k.id },
    h('div', { class: 'who' }, h('b', {}, k.name || 'unnamed'), h('span', { class: 'muted small mono' }, k.key_prefix)),
    k.budget === null ? h('div', { class: 'muted small' }, 'no budget') : meter(k.spend, k.budget, false),
    h('div', { class: 'amount' }, k.budget === null ? usd(k.spend) : `${usd(k.spend)} of ${usd(k.budget)}${periodText(k.period)}`))));
}
