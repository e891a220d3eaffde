// The weir status page: polls status.json about once a second and redraws. Everything
// from the server is written as text (textContent), never as markup.
'use strict';

(function () {
  const POLL_MS = 1000;
  const HIDDEN_POLL_MS = 5000;
  const PAGE_ROWS = 50;
  const STATES = ['down', 'degraded', 'draining', 'up'];
  const ACTIONS = ['drain', 'disable', 'enable'];
  const ACTION_STATE = { drain: 'drain', disable: 'disabled', enable: 'enabled' };

  let offset = 0;
  let filter = '';
  let polls = 0;
  let timer = null;
  let seq = 0;

  const $ = (id) => document.getElementById(id);

  function setText(id, text) {
    const el = $(id);
    if (el) el.textContent = text;
  }

  function fmtNum(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    return Number(v).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }

  function fmtBytes(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + units[i];
  }

  function fmtRate(v) { return fmtBytes(v) + '/s'; }

  function fmtSecs(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 2 : 1) + ' ms';
    return v.toFixed(2) + ' s';
  }

  function fmtAge(s) {
    if (s === null || s === undefined || !isFinite(s)) return '–';
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function fillTable(id, rows, render) {
    const tbody = $(id).tBodies[0];
    const fresh = document.createElement('tbody');
    for (const row of rows) fresh.appendChild(render(row));
    tbody.replaceWith(fresh);
  }

  function spark(id, values) {
    const canvas = $(id);
    if (!canvas || !canvas.getContext) return;
    const ctx = canvas.getContext('2d');
    const w = canvas.width;
    const h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const vs = values.map((v) => (v === null || !isFinite(v) ? 0 : v));
    if (vs.length < 2) return;
    const max = Math.max(...vs) || 1;
    ctx.strokeStyle = '#3b6ea5';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    vs.forEach((v, i) => {
      const x = (i / (vs.length - 1)) * (w - 2) + 1;
      const y = h - 2 - (v / max) * (h - 4);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  function draw(d) {
    const reload = d.last_reload
      ? (d.last_reload.ok ? 'last reload ok ' : 'last reload REJECTED ') + fmtAge(d.last_reload.age_seconds) + ' ago'
      : 'no reload since start';
    setText('ident', 'v' + d.version + ' · up ' + fmtAge(d.uptime_seconds) + ' · ' + d.cores + ' cores (' + d.driver +
      ') · config epoch ' + (d.epoch === null ? '?' : d.epoch) + ' · ' + reload);
    const ident = $('ident');
    ident.title = d.last_reload ? d.last_reload.message : '';

    const now = d.now;
    setText('m-rps', fmtNum(now.requests_per_second, 0));
    setText('m-eps', fmtNum(now.errors_per_second, 1));
    setText('m-in', fmtRate(now.bytes_in_per_second));
    setText('m-out', fmtRate(now.bytes_out_per_second));
    setText('m-p99', fmtSecs(now.p99_seconds));
    setText('m-conns', fmtNum(now.connections, 0));
    setText('m-inflight', fmtNum(now.in_flight, 0));
    const hist = d.history;
    spark('s-rps', hist.requests_per_second);
    spark('s-eps', hist.errors_per_second);
    spark('s-in', hist.bytes_in_per_second);
    spark('s-out', hist.bytes_out_per_second);
    spark('s-p99', hist.p99_seconds);

    if (d.minute) {
      setText('minute-window', '(' + fmtAge(d.minute.window_seconds) + ')');
      setText('c-retries', fmtNum(d.minute.retries, 0));
      setText('c-resumes', fmtNum(d.minute.resumes, 0));
      setText('c-resumes-failed', fmtNum(d.minute.resumes_failed, 0));
      setText('c-throttled', fmtNum(d.minute.throttled, 0));
      setText('c-shed', fmtNum(d.minute.shed, 0));
      setText('c-rejected', fmtNum(d.minute.rejected, 0));
    }

    fillTable('pools', d.pools, (p) => {
      const tr = document.createElement('tr');
      tr.dataset.pool = p.pool;
      cell(tr, p.pool);
      cell(tr, String(p.up), 'num');
      cell(tr, String(p.degraded), 'num');
      cell(tr, String(p.down), 'num' + (p.down > 0 ? ' state down' : ''));
      cell(tr, String(p.draining), 'num');
      cell(tr, p.inflight + ' / ' + p.limit, 'num');
      return tr;
    });

    const n = d.nodes;
    setText('nodes-count', '(' + n.total + ')');
    setText('nodes-range', n.matched === 0 ? 'no node matches'
      : (n.offset + 1) + '–' + (n.offset + n.rows.length) + ' of ' + n.matched);
    $('prev').disabled = n.offset === 0;
    $('next').disabled = n.offset + n.rows.length >= n.matched;
    setText('fb-window', d.first_byte_window_seconds === null ? 'everything since start'
      : 'the last ' + fmtAge(d.first_byte_window_seconds));
    fillTable('nodes', n.rows, (r) => {
      const tr = document.createElement('tr');
      const state = STATES.includes(r.state) ? r.state : 'unknown';
      tr.className = state;
      tr.dataset.node = r.node;
      tr.dataset.pool = r.pool;
      tr.dataset.state = state;
      cell(tr, r.pool);
      cell(tr, r.node);
      cell(tr, r.state, 'state ' + state);
      cell(tr, fmtAge(r.since_seconds), 'num');
      cell(tr, r.inflight + ' / ' + r.limit, 'num');
      cell(tr, fmtSecs(r.first_byte_p50_seconds), 'num');
      cell(tr, fmtSecs(r.first_byte_p99_seconds), 'num');
      cell(tr, r.reason, 'wrap');
      const admin = r.admin || {};
      const weight = admin.weight === undefined || admin.weight === 100 ? '' : ' · weight ' + admin.weight;
      const td = cell(tr, (admin.state || '–') + weight, 'admin');
      if (admin.set_by) {
        td.title = 'set by ' + admin.set_by + (admin.token ? ' (with the token)' : '') + ' at ' +
          new Date(admin.set_at_unix_seconds * 1000).toISOString();
      }
      const actions = document.createElement('td');
      for (const action of ACTIONS) {
        const button = document.createElement('button');
        button.type = 'button';
        button.textContent = action;
        button.dataset.action = action;
        button.disabled = admin.state === ACTION_STATE[action];
        button.addEventListener('click', () => control(action, r.pool, r.node));
        actions.appendChild(button);
      }
      tr.appendChild(actions);
      return tr;
    });

    const f = d.flows;
    setText('flows-count', '(' + f.total + ', ' + fmtRate(f.bytes_per_second) +
      (f.total > f.shown.length ? '; the ' + f.shown.length + ' fastest shown' : '') + ')');
    fillTable('flows', f.shown, (x) => {
      const tr = document.createElement('tr');
      cell(tr, x.client);
      cell(tr, x.tenant === null ? '–' : x.tenant + (x.class ? ' / ' + x.class : ''));
      cell(tr, x.method + ' ' + x.target, 'wrap');
      cell(tr, x.node === null ? '–' : x.node);
      cell(tr, fmtBytes(x.bytes_up + x.bytes_down), 'num');
      cell(tr, fmtRate(x.rate_bytes_per_second), 'num');
      cell(tr, fmtAge(x.age_seconds), 'num');
      return tr;
    });

    fillTable('tenants', d.tenants, (t) => {
      const tr = document.createElement('tr');
      cell(tr, t.tenant);
      cell(tr, t.class);
      cell(tr, fmtNum(t.admitted_per_second, 1), 'num');
      cell(tr, fmtNum(t.queued_per_second, 1), 'num');
      cell(tr, fmtNum(t.shed_per_second, 1), 'num' + (t.shed_per_second > 0 ? ' state down' : ''));
      cell(tr, t.limits || 'none', 'wrap');
      return tr;
    });
  }

  // Node control: the same POST /nodes/<action> an operator would send; the answer (the
  // node's new view, or a JSON error) is shown as text, and the table redraws at once.
  async function control(action, pool, node) {
    const url = 'nodes/' + action + '?pool=' + encodeURIComponent(pool) + '&node=' + encodeURIComponent(node);
    const headers = {};
    const token = $('token').value;
    if (token) headers.Authorization = 'Bearer ' + token;
    try {
      const resp = await fetch(url, { method: 'POST', cache: 'no-store', credentials: 'same-origin', headers });
      const text = await resp.text();
      let message = text;
      try {
        const body = JSON.parse(text);
        message = resp.ok ? body.admin.state + ' (weight ' + body.admin.weight + ')' : body.message;
      } catch {
        message = text.trim();
      }
      if (resp.status === 401) message = 'type the admin token first';
      setText('control-msg', pool + ' ' + node + ': ' + (resp.ok ? '' : resp.status + ' ') + message);
      $('control-msg').dataset.status = String(resp.status);
    } catch (e) {
      setText('control-msg', pool + ' ' + node + ': no answer: ' + (e && e.message ? e.message : e));
    }
    poll();
  }

  function setConn(cls, text) {
    const el = $('conn');
    el.className = 'conn ' + cls;
    el.textContent = text;
  }

  async function poll() {
    timer = null;
    const mine = ++seq;
    const url = 'status.json?offset=' + offset + '&limit=' + PAGE_ROWS + '&q=' + encodeURIComponent(filter);
    try {
      const resp = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
      // A newer poll (a click, a filter) went out meanwhile: it draws and reschedules.
      if (mine !== seq) return;
      if (resp.status === 401) {
        setConn('stale', 'not authorized: reload the page and log in');
      } else if (!resp.ok) {
        setConn('stale', 'error ' + resp.status);
      } else {
        const d = await resp.json();
        draw(d);
        polls++;
        document.body.dataset.polls = String(polls);
        document.body.dataset.updated = String(Date.now());
        setConn('live', 'live');
      }
    } catch (e) {
      if (mine !== seq) return;
      setConn('stale', 'no answer: ' + (e && e.message ? e.message : e));
    }
    schedule();
  }

  function schedule() {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }

  function start() {
    $('prev').addEventListener('click', () => { offset = Math.max(0, offset - PAGE_ROWS); poll(); });
    $('next').addEventListener('click', () => { offset += PAGE_ROWS; poll(); });
    $('filter').addEventListener('input', (e) => { filter = e.target.value; offset = 0; poll(); });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) poll(); });
    poll();
  }

  start();
})();
