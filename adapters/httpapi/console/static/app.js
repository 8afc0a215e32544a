// ledgerd console: a single-page app over the REST API (/v1/).
//
// Rules kept throughout: the API key stays in this tab's sessionStorage and
// goes out in the Authorization header only, never in a URL; everything
// shown is set with textContent (el() below), never parsed as HTML; nothing
// is fetched from anywhere but this origin (the Content-Security-Policy
// enforces it too). The console moves no money: its one write is an admin's
// projection rebuild, which the server authorizes like any REST call.
'use strict';

(() => {
  const KEY = 'ledgerd.console.key';
  // PAGE is the page size of every list the console shows.
  const PAGE = 50;
  // RELATED_MAX bounds the related transfers (reversals, holds) fetched
  // with a transfer's detail.
  const RELATED_MAX = 100;
  const CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
    'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED',
    'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

  let who = null; // the key's identity from /console/whoami
  let renderSeq = 0; // the route being rendered; older renders stop writing

  // --- DOM: every node is built here, text only as text. -----------------

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'on') {
        for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      } else if (k === 'class') {
        e.className = v;
      } else if (k === 'value') {
        e.value = v;
      } else if (k === 'checked') {
        e.checked = !!v;
      } else {
        e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // link is an in-app link: parts are path segments, encoded.
  function link(text, parts, query) {
    return el('a', { href: route(parts, query) }, text);
  }

  function route(parts, query) {
    let h = '#/' + parts.map(encodeURIComponent).join('/');
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    const qs = q.toString();
    return qs ? h + '?' + qs : h;
  }

  function table(headers, rows, opts) {
    const o = opts || {};
    const num = new Set(o.num || []);
    return el('table', { id: o.id },
      el('thead', null, el('tr', null, headers.map((h, i) => el('th', { class: num.has(i) ? 'num' : null }, h)))),
      el('tbody', null, rows.map(r => el('tr', null, r.map((c, i) => {
        if (c instanceof Node && c.tagName === 'TD') return c;
        return el('td', { class: num.has(i) ? 'num' : null }, c);
      })))));
  }

  function facts(pairs, id) {
    return el('dl', { class: 'facts', id }, pairs.map(([k, v, vid]) => [el('dt', null, k), el('dd', { id: vid }, v)]));
  }

  function errorBox(err) {
    return el('p', { class: 'error', role: 'alert' }, describe(err));
  }

  function empty(what) {
    return el('p', { class: 'note' }, 'No ' + what + '.');
  }

  // section renders a titled part of a page whose content loads on its own:
  // an error in one part (a role the key lacks, a method this ledgerd does
  // not serve yet) leaves the others shown.
  function section(parent, title, load, id) {
    const body = el('div', { id }, el('p', { class: 'note' }, 'Loading…'));
    parent.append(el('section', null, title ? el('h2', null, title) : null, body));
    const seq = renderSeq;
    Promise.resolve().then(load).then(
      nodes => { if (seq === renderSeq) body.replaceChildren(...[nodes].flat(Infinity).filter(Boolean)); },
      err => { if (seq === renderSeq) body.replaceChildren(errorBox(err)); });
  }

  function short(s) { return (s || '').replace(/^[A-Z]+_(STATUS|KIND|STATE|BALANCE)_/, '').replace(/^(DIRECTION|ACCOUNT_STATUS|LEDGER_STATUS|NORMAL_BALANCE|TRANSFER_KIND|TRANSFER_STATUS|PROJECTION_STATE)_/, ''); }
  function time(t) { return t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : ''; }
  function n(v) { return v === undefined || v === null || v === '' ? '0' : String(v); }
  function meta(m) { return Object.entries(m || {}).map(([k, v]) => k + '=' + v).join(', '); }

  // --- REST ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, fields) {
      super(message);
      this.status = status;
      this.code = code;
      this.fields = fields || [];
    }
  }

  function describe(err) {
    if (!(err instanceof ApiError)) return String(err && err.message || err);
    let s = err.code + ': ' + err.message;
    for (const f of err.fields) s += '\n  ' + f.field + ': ' + f.description;
    if (err.code === 'UNIMPLEMENTED') s = 'This ledgerd does not serve this yet. ' + s;
    if (err.code === 'PERMISSION_DENIED') s = 'Your key may not see this. ' + s;
    if (err.code === 'UNAUTHENTICATED') s = 'The key was refused: sign in again. ' + s;
    return s;
  }

  function headers(extra) {
    const h = Object.assign({ Accept: 'application/json' }, extra || {});
    const key = sessionStorage.getItem(KEY);
    if (key) h.Authorization = 'Bearer ' + key;
    return h;
  }

  async function send(url, init) {
    let resp;
    try {
      resp = await fetch(url, Object.assign({ cache: 'no-store', credentials: 'omit', redirect: 'error' }, init));
    } catch (e) {
      throw new ApiError(0, 'UNAVAILABLE', 'ledgerd did not answer (' + e.message + ')');
    }
    return resp;
  }

  async function decode(resp) {
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : {}; } catch (e) { data = null; }
    if (resp.ok && data) return data;
    // A streaming route refused before its first message answers
    // {"error": status}; the others, the status itself.
    const st = data && data.error && typeof data.error.message === 'string' ? data.error : data;
    if (st && typeof st.message === 'string') {
      const fields = (st.details || []).flatMap(d => d.field_violations || []);
      throw new ApiError(resp.status, CODES[st.code] || 'HTTP ' + resp.status, st.message, fields);
    }
    throw new ApiError(resp.status, 'HTTP ' + resp.status, text.slice(0, 300) || resp.statusText);
  }

  // api calls a REST route: path is under /v1, built from encoded segments.
  async function api(parts, params) {
    const url = new URL('/v1/' + parts.map(seg).join('/'), location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v === undefined || v === null || v === '' || v === false) continue;
      for (const x of [v].flat()) url.searchParams.append(k, String(x));
    }
    return decode(await send(url, { headers: headers() }));
  }

  async function apiPost(path, body) {
    const url = new URL('/v1/' + path, location.origin);
    return decode(await send(url, { method: 'POST', headers: headers({ 'Content-Type': 'application/json' }), body: JSON.stringify(body) }));
  }

  // seg encodes a path segment; ':' and '@' (in account ids) stay as they
  // are, which grpc-gateway expects inside a segment. '.' and '..' are
  // refused: the URL would drop or climb them (encoded too: %2e%2e is a
  // '..' to the URL parser), and a crafted link would call another route
  // with the operator's key.
  function seg(s) {
    s = String(s);
    if (s === '.' || s === '..' || /^(\.|%2e){1,2}$/i.test(s)) throw new ApiError(0, 'bad path segment', JSON.stringify(s));
    return encodeURIComponent(s).replace(/%3A/gi, ':').replace(/%40/g, '@');
  }

  async function whoami() {
    return decode(await send(new URL('whoami', location.href), { headers: headers() }));
  }

  function isAdminOf(ledger) {
    if (!who || !(who.roles || []).includes('admin')) return false;
    return !who.ledgers || who.ledgers.length === 0 || who.ledgers.includes(ledger);
  }

  // --- Routing --------------------------------------------------------------

  function parseHash() {
    const h = location.hash.replace(/^#\/?/, '');
    const [path, qs] = h.split('?', 2);
    const parts = path ? path.split('/').map(decodeURIComponent) : [];
    return { parts, q: Object.fromEntries(new URLSearchParams(qs || '')) };
  }

  function render() {
    renderSeq++;
    const main = document.getElementById('main');
    main.replaceChildren();
    if (!who) return loginPage(main);
    const { parts, q } = parseHash();
    if (parts[0] !== 'l' || !parts[1]) return ledgersPage(main, q);
    const ledger = parts[1];
    const page = parts[2] || 'accounts';
    ledgerHeader(main, ledger, page);
    switch (page) {
      case 'accounts': return accountsPage(main, ledger, q);
      case 'account': return accountPage(main, ledger, parts[3] || '', q);
      case 'transfers': return transfersPage(main, ledger, q);
      case 'transfer': return transferPage(main, ledger, parts[3] || '');
      case 'trial-balance': return trialBalancePage(main, ledger, q);
      case 'projections': return projectionsPage(main, ledger);
      case 'integrity': return integrityPage(main, ledger, q);
      case 'reconciliation': return reconciliationPage(main, ledger, parts[3] || '', q);
      default: main.append(el('p', { class: 'error' }, 'No such page.'));
    }
  }

  // go sets the route (a history entry) and renders it.
  function go(parts, query) {
    const h = route(parts, query);
    if (location.hash === h) render(); else location.hash = h;
  }

  // filterForm is a form whose fields become the route's query.
  function filterForm(fields, q, onSubmit, id) {
    const inputs = fields.map(f => {
      const input = f.options
        ? el('select', { name: f.name }, f.options.map(([v, t]) => el('option', { value: v, selected: (q[f.name] || '') === v }, t)))
        : el('input', { name: f.name, type: f.type || 'text', value: q[f.name] || '', placeholder: f.placeholder || '', size: f.size || 14 });
      return el('label', null, f.label, input);
    });
    const form = el('form', { class: 'filters', id, on: { submit: e => {
      e.preventDefault();
      const out = {};
      for (const i of form.querySelectorAll('input,select')) if (i.value.trim() !== '') out[i.name] = i.value.trim();
      onSubmit(out);
    } } }, inputs, el('button', { type: 'submit' }, 'Show'));
    return form;
  }

  function pager(next, onNext, q) {
    const p = el('div', { class: 'pager' });
    if (q.cursor || q.page_token) p.append(el('a', { href: '#', on: { click: e => { e.preventDefault(); onNext(''); } } }, 'First page'));
    if (next) p.append(el('a', { href: '#', class: 'next', on: { click: e => { e.preventDefault(); onNext(next); } } }, 'Next page'));
    return p;
  }

  // --- Login ----------------------------------------------------------------

  function loginPage(main, message) {
    const input = el('input', { id: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'lk_…' });
    const err = el('p', { id: 'login-error', class: 'error', role: 'alert', hidden: !message }, message || '');
    const form = el('form', { id: 'login', on: { submit: async e => {
      e.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      try {
        who = await whoami();
      } catch (x) {
        sessionStorage.removeItem(KEY);
        err.textContent = describe(x);
        err.hidden = false;
        return;
      }
      showWho();
      render();
    } } },
    el('h1', null, 'Sign in'),
    el('p', null, 'Paste an API key (ledgerctl keys create, or the dev admin key in var/admin.key). ',
      'It stays in this tab only (sessionStorage) and is sent in the Authorization header.'),
    input, el('button', { type: 'submit' }, 'Sign in'), err);
    main.append(form);
    input.focus();
  }

  function showWho() {
    const w = document.getElementById('who');
    const out = document.getElementById('logout');
    if (!who) { w.textContent = ''; out.hidden = true; return; }
    w.textContent = who.auth_off ? 'auth is off: every call is allowed'
      : 'key ' + who.id + ' · ' + (who.roles || []).join(', ') + ' · ' +
        (who.ledgers && who.ledgers.length ? 'ledgers ' + who.ledgers.join(', ') : 'every ledger');
    out.hidden = !!who.auth_off;
  }

  // --- Ledgers --------------------------------------------------------------

  function ledgersPage(main, q) {
    main.append(el('h1', null, 'Ledgers'));
    main.append(filterForm([{ name: 'ledger', label: 'Open a ledger by name', placeholder: 'acme' }], {},
      f => f.ledger && go(['l', f.ledger]), 'open-ledger'));
    const row = l => [link(l.name, ['l', l.name]), short(l.status), n(l.head), time(l.created_at), time(l.status_changed_at)];
    const head = ['ledger', 'status', 'head', 'created', 'status changed'];
    section(main, null, async () => {
      if (who.ledgers && who.ledgers.length) {
        // A scoped key may not list every ledger: show its own.
        const ls = await Promise.all(who.ledgers.map(l => api(['ledgers', l]).then(r => r.ledger, () => ({ name: l }))));
        return table(head, ls.map(row), { id: 'ledgers', num: [2] });
      }
      const r = await api(['ledgers'], { limit: PAGE, page_token: q.page_token });
      const ls = r.ledgers || [];
      return [ls.length ? table(head, ls.map(row), { id: 'ledgers', num: [2] }) : empty('ledgers'),
        pager(r.next_page_token, t => go([], { page_token: t }), q)];
    });
  }

  function ledgerHeader(main, ledger, page) {
    const status = el('span', { id: 'ledger-status', class: 'note' });
    main.append(el('h1', null, 'Ledger ', ledger, ' ', status));
    const tabs = [['accounts', 'Accounts'], ['transfers', 'Transfers'], ['trial-balance', 'Trial balance'],
      ['projections', 'Projections'], ['integrity', 'Integrity'], ['reconciliation', 'Reconciliation']];
    main.append(el('nav', { class: 'tabs' }, tabs.map(([p, t]) =>
      el('a', { href: route(['l', ledger, p]), class: p === page || (page === 'account' && p === 'accounts') || (page === 'transfer' && p === 'transfers') ? 'current' : null }, t))));
    const seq = renderSeq;
    api(['ledgers', ledger]).then(r => {
      if (seq === renderSeq) status.textContent = '(' + short(r.ledger.status) + ', head ' + n(r.ledger.head) + ')';
    }, () => {});
  }

  // --- Accounts and assets ------------------------------------------------

  function accountsPage(main, ledger, q) {
    main.append(filterForm([{ name: 'account', label: 'Open an account by id', placeholder: 'users:42:wallet', size: 24 }], {},
      f => f.account && go(['l', ledger, 'account', f.account]), 'open-account'));
    section(main, 'Assets', async () => {
      const r = await api(['ledgers', ledger, 'assets'], { limit: 1000 });
      const as = r.assets || [];
      return as.length ? table(['asset', 'scale', 'defined at'], as.map(a => [a.code, n(a.scale), n(a.position)]), { id: 'assets', num: [1, 2] }) : empty('assets');
    });
    main.append(el('h2', null, 'Accounts'));
    main.append(filterForm([
      { name: 'prefix', label: 'id prefix', placeholder: 'users:' },
      { name: 'pattern', label: 'or pattern', placeholder: 'users:*:wallet' },
      { name: 'asset', label: 'asset', size: 8 },
      { name: 'status', label: 'status', options: [['', 'any'], ['ACCOUNT_STATUS_OPEN', 'open'], ['ACCOUNT_STATUS_CLOSED', 'closed']] },
    ], q, f => go(['l', ledger, 'accounts'], f), 'account-filters'));
    section(main, null, async () => {
      const r = await api(['ledgers', ledger, 'accounts'], {
        prefix: q.prefix, pattern: q.pattern, asset: q.asset, status: q.status,
        include_balances: true, limit: PAGE, cursor: q.cursor,
      });
      const as = r.accounts || [];
      const rows = as.map(a => {
        const b = a.balance || {};
        return [link(a.id, ['l', ledger, 'account', a.id]), a.asset, short(a.normal_balance), short(a.status),
          n(b.balance), n(b.available), a.min_balance === undefined ? '' : a.min_balance,
          a.max_balance === undefined ? '' : a.max_balance, meta(a.metadata)];
      });
      return [as.length ? table(['account', 'asset', 'normal', 'status', 'balance', 'available', 'min', 'max', 'metadata'], rows,
        { id: 'accounts', num: [4, 5, 6, 7] }) : empty('accounts match'),
      pager(r.next_cursor, c => go(['l', ledger, 'accounts'], Object.assign({}, q, { cursor: c })), q)];
    }, 'accounts-list');
  }

  // --- An account: balance and statement ----------------------------------

  function accountPage(main, ledger, account, q) {
    main.append(el('h2', null, 'Account ', el('span', { id: 'account-id' }, account)));
    main.append(el('p', null, link('Its transfers', ['l', ledger, 'transfers'], { account }), ' · ',
      link('Its reconciliation', ['l', ledger, 'reconciliation', account])));
    section(main, 'Balance', async () => {
      const r = await api(['ledgers', ledger, 'balances'], { accounts: account });
      const b = (r.balances || []).find(x => x.account === account);
      if (!b) return el('p', { class: 'error', id: 'balance-missing' }, 'No account ' + account + ' in ledger ' + ledger + '.');
      return facts([
        ['balance', b.balance, 'balance'], ['available', b.available, 'available'], ['asset', b.asset],
        ['debits posted', n(b.debits_posted)], ['credits posted', n(b.credits_posted)],
        ['debits pending', n(b.debits_pending)], ['credits pending', n(b.credits_pending)],
        ['as of position', n(b.position || r.position)],
      ], 'balance-facts');
    });
    main.append(el('h2', null, 'Statement'));
    main.append(filterForm([{ name: 'include_pending', label: 'holds', options: [['', 'posted only'], ['true', 'with holds']] }],
      q, f => go(['l', ledger, 'account', account], f), 'statement-filters'));
    section(main, null, async () => {
      const r = await api(['ledgers', ledger, 'accounts', account, 'statement'],
        { limit: PAGE, cursor: q.cursor, include_pending: q.include_pending === 'true' });
      const ls = r.lines || [];
      const rows = ls.map(l => [n(l.position), time(l.recorded_at), time(l.effective_at),
        link(l.transfer_id, ['l', ledger, 'transfer', l.transfer_id]), l.kind + (l.pending ? ' (hold)' : ''),
        (l.counter_accounts || []).join(', '), short(l.direction), l.amount, n(l.running_balance), n(l.running_available), l.reference || '']);
      return [facts([['opening balance', n(r.opening_balance), 'opening-balance'], ['closing balance', n(r.closing_balance), 'closing-balance']]),
        ls.length ? table(['position', 'recorded', 'effective', 'transfer', 'kind', 'counter accounts', 'side', 'amount',
          'running balance', 'running available', 'reference'], rows, { id: 'statement', num: [0, 7, 8, 9] }) : empty('movements'),
        pager(r.next_cursor, c => go(['l', ledger, 'account', account], Object.assign({}, q, { cursor: c })), q)];
    }, 'statement-section');
  }

  // --- Transfers ------------------------------------------------------------

  function postingsText(t) {
    return (t.postings || []).map(p => p.debit_account + ' → ' + p.credit_account + ' ' + p.amount + ' ' + p.asset).join('; ');
  }

  function isoOf(local) {
    if (!local) return undefined;
    const d = new Date(local);
    return isNaN(d) ? local : d.toISOString();
  }

  function transfersPage(main, ledger, q) {
    main.append(filterForm([{ name: 'id', label: 'Open a transfer by id', size: 24 }], {},
      f => f.id && go(['l', ledger, 'transfer', f.id]), 'open-transfer'));
    main.append(el('h2', null, 'Transfers'));
    main.append(filterForm([
      { name: 'account', label: 'account' }, { name: 'reference', label: 'reference' },
      { name: 'status', label: 'status', options: [['', 'any'], ...['POSTED', 'PENDING', 'PENDING_POSTED', 'VOIDED', 'EXPIRED',
        'REVERSED', 'PARTIALLY_REVERSED'].map(s => ['TRANSFER_STATUS_' + s, s.toLowerCase().replace('_', ' ')])] },
      { name: 'asset', label: 'asset', size: 8 }, { name: 'min_amount', label: 'min amount', size: 10 },
      { name: 'max_amount', label: 'max amount', size: 10 },
      { name: 'metadata_key', label: 'metadata key', size: 10 }, { name: 'metadata_value', label: 'value', size: 10 },
      { name: 'effective_from', label: 'effective from', type: 'datetime-local' }, { name: 'effective_to', label: 'effective to', type: 'datetime-local' },
      { name: 'recorded_from', label: 'recorded from', type: 'datetime-local' }, { name: 'recorded_to', label: 'recorded to', type: 'datetime-local' },
    ], q, f => go(['l', ledger, 'transfers'], f), 'transfer-filters'));
    section(main, null, async () => {
      const r = await api(['ledgers', ledger, 'transfers'], {
        account: q.account, reference: q.reference, status: q.status, asset: q.asset,
        min_amount: q.min_amount, max_amount: q.max_amount, metadata_key: q.metadata_key, metadata_value: q.metadata_value,
        effective_from: isoOf(q.effective_from), effective_to: isoOf(q.effective_to),
        recorded_from: isoOf(q.recorded_from), recorded_to: isoOf(q.recorded_to),
        limit: PAGE, cursor: q.cursor,
      });
      const ts = r.transfers || [];
      return [ts.length ? transfersTable(ledger, ts, 'transfers') : empty('transfers match'),
        pager(r.next_cursor, c => go(['l', ledger, 'transfers'], Object.assign({}, q, { cursor: c })), q)];
    });
  }

  function transfersTable(ledger, ts, id) {
    return table(['transfer', 'kind', 'status', 'postings', 'reference', 'effective', 'position'],
      ts.map(t => [link(t.id, ['l', ledger, 'transfer', t.id]), short(t.kind), short(t.status), postingsText(t),
        t.reference || '', time(t.effective_at), n(t.position)]), { id, num: [6] });
  }

  async function getTransfers(ledger, ids) {
    // POST :batchGet rather than GET /transfers/{ids}: ids may hold ':'.
    const r = await apiPost('ledgers/' + seg(ledger) + '/transfers:batchGet', { ids });
    return r.transfers || [];
  }

  function transferPage(main, ledger, id) {
    main.append(el('h2', null, 'Transfer ', id));
    section(main, null, async () => {
      const [t] = await getTransfers(ledger, [id]);
      if (!t) return el('p', { class: 'error' }, 'No transfer ' + id + ' in ledger ' + ledger + '.');
      const ref = x => x ? link(x, ['l', ledger, 'transfer', x]) : '';
      const out = [facts([
        ['kind', short(t.kind)], ['status', short(t.status), 'transfer-status'], ['reference', t.reference || ''],
        ['metadata', meta(t.metadata)], ['effective', time(t.effective_at)], ['recorded', time(t.recorded_at)],
        ['position', n(t.position)], ['expires', time(t.expires_at)],
        ['hold', ref(t.pending_id)], ['resolved by', ref(t.resolved_by)], ['reverses', ref(t.reverses)],
        ['reversed by', (t.reversed_by || []).map((x, i) => [i ? ', ' : '', ref(x)])],
      ]), el('h2', null, 'Postings'),
      table(['debit', 'credit', 'amount', 'asset', 'still held', 'reversed'], (t.postings || []).map(p =>
        [link(p.debit_account, ['l', ledger, 'account', p.debit_account]), link(p.credit_account, ['l', ledger, 'account', p.credit_account]),
          p.amount, p.asset, p.remaining || '', p.reversed || '']), { id: 'postings', num: [2, 4, 5] })];
      const related = [t.pending_id, t.resolved_by, t.reverses, ...(t.reversed_by || [])].filter(Boolean).slice(0, RELATED_MAX);
      out.push(el('h2', null, 'Holds and reversals'));
      if (!related.length) {
        out.push(empty('holds or reversals linked to it'));
      } else {
        out.push(transfersTable(ledger, await getTransfers(ledger, related), 'related'));
      }
      return out;
    });
  }

  // --- Trial balance --------------------------------------------------------

  function trialBalancePage(main, ledger, q) {
    main.append(el('h2', null, 'Trial balance'));
    main.append(filterForm([{ name: 'as_of_position', label: 'as of position', size: 10, placeholder: 'now' }], q,
      f => go(['l', ledger, 'trial-balance'], f), 'trial-filters'));
    section(main, null, async () => {
      const r = await api(['ledgers', ledger, 'trial-balance'], { as_of_position: q.as_of_position });
      const ls = r.lines || [];
      const rows = ls.map(l => {
        const ok = n(l.debits_posted) === n(l.credits_posted) && n(l.debits_pending) === n(l.credits_pending);
        return [l.asset, n(l.debits_posted), n(l.credits_posted), n(l.debits_pending), n(l.credits_pending), n(l.accounts),
          n(l.accounts_closed), el('td', null, el('span', { class: ok ? 'ok' : 'bad' }, ok ? 'balanced' : 'DOES NOT BALANCE'))];
      });
      return [el('p', { class: 'note' }, 'At position ' + n(r.position) + '.'),
        ls.length ? table(['asset', 'debits posted', 'credits posted', 'debits pending', 'credits pending', 'accounts', 'closed', ''],
          rows, { id: 'trial-balance', num: [1, 2, 3, 4, 5, 6] }) : empty('assets with movements')];
    });
  }

  // --- Projections ----------------------------------------------------------

  function projectionsPage(main, ledger) {
    main.append(el('h2', null, 'Projections'));
    const progress = el('output', { class: 'progress', id: 'rebuild-progress' });
    section(main, null, async () => {
      const r = await api(['ledgers', ledger, 'projections']);
      const ps = r.projections || [];
      const admin = isAdminOf(ledger);
      const head = ['projection', 'version', 'position', 'head', 'lag (events)', 'lag (s)', 'state', 'reason', 'updated'];
      if (admin) head.push('');
      const rows = ps.map(p => {
        const ok = short(p.state) === 'OK';
        const row = [p.name, n(p.version), n(p.position), n(p.head), n(p.lag_positions), (p.lag_seconds || 0).toFixed(3),
          el('td', null, el('span', { class: ok ? 'ok' : 'bad' }, short(p.state))), p.reason || '', time(p.updated_at)];
        if (admin) {
          row.push(el('td', null, el('button', { type: 'button', class: 'admin', 'data-projection': p.name,
            on: { click: () => rebuild(ledger, p.name, progress) } }, 'Rebuild')));
        }
        return row;
      });
      return [ps.length ? table(head, rows, { id: 'projections', num: [1, 2, 3, 4, 5] }) : empty('projections'), progress,
        admin ? el('p', { class: 'note' }, 'A rebuild replays the log into new tables while queries go on, then swaps them in.') : null];
    });
  }

  // rebuild streams RebuildProjection's progress (newline-delimited JSON).
  async function rebuild(ledger, projection, out) {
    if (!window.confirm('Rebuild projection ' + projection + ' of ledger ' + ledger + '?')) return;
    out.textContent = 'Rebuilding ' + projection + '…';
    try {
      const resp = await send(new URL('/v1/ledgers/' + seg(ledger) + '/projections/' + seg(projection) + ':rebuild', location.origin),
        { method: 'POST', headers: headers() });
      if (!resp.ok) await decode(resp);
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (!line) continue;
          const m = JSON.parse(line);
          if (m.error) throw new ApiError(0, CODES[m.error.code] || 'ERROR', m.error.message);
          const p = m.result || {};
          const rate = p.events_per_second ? ', ' + Math.round(p.events_per_second) + ' events/s' : '';
          const eta = p.eta_seconds && !p.done ? ', ' + Math.ceil(p.eta_seconds) + ' s to go' : '';
          out.textContent = projection + ': ' + n(p.position) + ' / ' + n(p.head) + ' events' + rate + eta +
            (p.done ? ', swapped in at position ' + n(p.swapped_at_position) + '. Done.' : '');
        }
      }
    } catch (e) {
      out.replaceChildren(errorBox(e));
    }
  }

  // --- Integrity: verification status, anchors, periods -----------------------

  function integrityPage(main, ledger, q) {
    main.append(el('h2', null, 'Chain state (projections)'));
    section(main, null, async () => {
      const [lg, ps] = await Promise.all([api(['ledgers', ledger]), api(['ledgers', ledger, 'projections'])]);
      const head = Number(lg.ledger.head || 0);
      const faults = (ps.projections || []).filter(p => short(p.state) !== 'OK');
      const out = [facts([
        ['log head', String(head)],
        ['hash chain as read by the projections', faults.length
          ? el('span', { class: 'bad', id: 'chain-state' }, faults.map(p => p.name + ': ' + short(p.state) + ' ' + (p.reason || '')).join('; '))
          : el('span', { class: 'ok', id: 'chain-state' }, 'unbroken (' + (ps.projections || []).length + ' projections check every event)')],
        ['head signed', el('span', { id: 'anchor-state' }, '…')],
      ])];
      const anchorState = out[0].querySelector('#anchor-state');
      api(['ledgers', ledger, 'anchors'], { from_position: Math.max(head, 1), limit: 1 }).then(r => {
        const a = (r.anchors || [])[0];
        anchorState.className = a ? 'ok' : 'note';
        anchorState.textContent = a ? 'yes, at ' + time(a.time) + ' (key ' + a.key_id + ')' : 'not yet (the head is signed every -anchor-every, and at a period close)';
      }, e => { anchorState.textContent = describe(e); });
      out.push(el('p', { class: 'note' }, 'The full check (replay of the log through the domain, every read model against the replay, ' +
        'anchors\' signatures) runs outside the server: ledgerctl --ledger ' + ledger + ' audit verify --anchors FILE --anchor-pubkey KEY.'));
      return out;
    });
    section(main, 'Signed anchors', async () => {
      const r = await api(['ledgers', ledger, 'anchors'], { from_position: q.anchors_from, limit: 20 });
      const as = r.anchors || [];
      const p = el('div', { class: 'pager' });
      if (r.next_from_position && r.next_from_position !== '0') {
        p.append(link('Next page', ['l', ledger, 'integrity'], Object.assign({}, q, { anchors_from: r.next_from_position })));
      }
      return [as.length ? table(['position', 'hash', 'signed', 'key'], as.map(a => [n(a.position), el('td', { class: 'mono', title: a.hash }, a.hash),
        time(a.time), a.key_id]), { id: 'anchors', num: [0] }) : empty('anchors'), p];
    });
    section(main, 'Closed periods', async () => {
      const r = await api(['ledgers', ledger, 'periods'], { limit: 20, after_position: q.periods_after });
      const ps = r.periods || [];
      const last = ps.length ? ps[ps.length - 1].position : '';
      return [ps.length ? table(['closed at position', 'from', 'start', 'end', 'accounts', 'totals', 'closing digest'],
        ps.map(p => [n(p.position), n(p.from_position), time(p.start), time(p.end), n(p.accounts),
          (p.trial_balance || []).map(t => t.asset + ' ' + n(t.debits_posted) + '/' + n(t.credits_posted)).join('; '),
          el('td', { class: 'mono', title: p.closing_digest }, p.closing_digest || '')]), { id: 'periods', num: [0, 1, 4] }) : empty('closed periods'),
      r.more ? el('div', { class: 'pager' }, link('Next page', ['l', ledger, 'integrity'], Object.assign({}, q, { periods_after: last }))) : null];
    });
  }

  // --- Reconciliation -------------------------------------------------------

  function reconciliationPage(main, ledger, account, q) {
    main.append(el('h2', null, 'Reconciliation', account ? ' of ' + account : ''));
    main.append(filterForm([{ name: 'account', label: 'account', size: 24, placeholder: 'bank:operating' },
      { name: 'from_date', label: 'from (value date)', type: 'date' }, { name: 'to_date', label: 'to', type: 'date' }],
    Object.assign({ account }, q), f => {
      const a = f.account || account;
      delete f.account;
      if (a) go(['l', ledger, 'reconciliation', a], f);
    }, 'recon-filters'));
    if (!account) return;
    const period = { from_date: q.from_date, to_date: q.to_date };
    // The lists load once the summary did: an account never reconciled
    // answers NOT_FOUND once, not four times.
    const lists = el('div');
    section(main, 'Summary', async () => {
      const r = await api(['ledgers', ledger, 'accounts', account, 'reconciliation'], period);
      reconciliationLists(lists, ledger, account, q, period);
      return [facts([
        ['external balance (statement lines)', n(r.external_balance)], ['ledger balance', n(r.ledger_balance)],
        ['difference (external − ledger)', n(r.difference), 'recon-difference'],
        ['matches', n(r.matches) + ' (' + n(r.matched_lines) + ' lines, ' + n(r.matched_movements) + ' movements)'],
        ['unmatched lines', n(r.unmatched_lines) + ' for ' + n(r.unmatched_lines_sum)],
        ['unmatched movements', n(r.unmatched_movements) + ' for ' + n(r.unmatched_movements_sum)],
        ['matches by rule', meta(r.matches_by_rule)],
      ]), el('p', { id: 'recon-explained' }, 'The difference explained: ', n(r.difference), ' = unmatched lines ',
        n(r.unmatched_lines_to_end_sum), ' − unmatched movements ', n(r.unmatched_movements_to_end_sum),
        ' + difference within matches ', n(r.matched_difference), ' (tolerances, manual matches, sides after the period).')];
    });
    main.append(lists);
  }

  function reconciliationLists(parent, ledger, account, q, period) {
    const ref = i => i.kind === 'line' ? i.source + ' ' + i.external_id : i.transfer_id + ' #' + n(i.posting_index);
    const item = i => [i.kind, i.kind === 'line' ? ref(i) : link(ref(i), ['l', ledger, 'transfer', i.transfer_id]),
      i.amount, i.date, i.reference || '', i.description || '', i.manual_only ? 'manual only' : ''];
    const itemHead = ['side', 'item', 'amount', 'date', 'reference', 'description', ''];
    for (const [side, title, tokenName, id] of [['UNMATCHED_SIDE_LINES', 'Unmatched statement lines', 'lines_page', 'unmatched-lines'],
      ['UNMATCHED_SIDE_MOVEMENTS', 'Unmatched ledger movements', 'movements_page', 'unmatched-movements'],
      ['UNMATCHED_SIDE_MATCHES', 'Matches', 'matches_page', 'matches']]) {
      section(parent, title, async () => {
        const r = await api(['ledgers', ledger, 'accounts', account, 'reconciliation', 'items'],
          Object.assign({ side, page_size: PAGE, page_token: q[tokenName] }, period));
        const next = r.next_page_token ? el('div', { class: 'pager' }, link('Next page', ['l', ledger, 'reconciliation', account],
          Object.assign({}, q, { [tokenName]: r.next_page_token }))) : null;
        if (side === 'UNMATCHED_SIDE_MATCHES') {
          const ms = r.matches || [];
          return [ms.length ? table(['match', 'rule', 'difference', 'items', 'reason'], ms.map(m => [m.id, m.rule, n(m.difference),
            (m.items || []).map(i => ref(i) + ' ' + i.amount).join('; '), m.reason || '']), { id, num: [2] }) : empty('matches'), next];
        }
        const is = r.items || [];
        return [is.length ? table(itemHead, is.map(item), { id, num: [2] }) : empty('unmatched items'), next];
      });
    }
  }

  // --- Start ----------------------------------------------------------------

  async function start() {
    document.getElementById('logout').addEventListener('click', () => {
      sessionStorage.removeItem(KEY);
      who = null;
      showWho();
      location.hash = '#/';
      render();
    });
    window.addEventListener('hashchange', render);
    try {
      // With a key kept in this tab, or with auth off, no sign-in is needed.
      who = await whoami();
    } catch (e) {
      who = null;
      if (sessionStorage.getItem(KEY)) {
        sessionStorage.removeItem(KEY);
        showWho();
        renderSeq++;
        document.getElementById('main').replaceChildren();
        return loginPage(document.getElementById('main'), describe(e));
      }
    }
    showWho();
    render();
  }

  start();
})();
