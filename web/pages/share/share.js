/* The share page: a lost person's phone browser sends its position to the
 * rescuers through sard's JSON API.
 *
 * Written in ES5 (no arrow functions, let/const, classes, template
 * strings, async, ?. or ??) so that old in-app browsers (WeChat's X5,
 * Android 7 WebViews) run it; a Go test parses it as ES5.
 *
 * The token is read from the URL's fragment and only ever sent in the
 * Authorization header. Every position gets the device's next sequence
 * number and is queued on the phone (IndexedDB, else localStorage) before
 * it is sent; the queue is sent in order and an entry is dropped only when
 * the server's acked_through covers it, so a lost network, a reload or a
 * killed tab loses nothing and sends nothing twice. Fix times are
 * corrected by the offset between the phone's clock and the server_time of
 * the last answer.
 */
(function () {
  'use strict';

  var TEXT = {
    zh: {
      title: '把位置发给救援人员',
      brand: '山地搜救',
      other: 'English',
      headline: '救援人员正在找您',
      intro: '点下面的按钮，把您的位置发给救援人员。',
      start: '发送我的位置',
      starting: '正在获取位置…',
      lastSent: '上次发送成功',
      accuracy: '位置精度',
      queued: '等待发送',
      readoutTitle: '网络不通时，打电话把这些念给接警员：',
      cell: '网格编号',
      tips: '如果安全，请留在原地不要走动。位置发出后，可以锁屏省电；移动后或每隔半小时再打开本页。',
      seen: '救援人员能看到您的位置',
      locating: '正在获取您的位置…请到开阔处',
      sending: '正在发送位置…',
      offline: '没有网络：位置已存在手机里，有网络时自动发送',
      retrying: '发送没有成功，正在重试…',
      never: '还没有',
      ago: '前',
      justNow: '刚刚',
      sec: '秒',
      min: '分钟',
      hour: '小时',
      meters: '米',
      km: '公里',
      lat: function (v) { return (v >= 0 ? '北纬 ' : '南纬 ') + Math.abs(v).toFixed(5) + '°'; },
      lng: function (v) { return (v >= 0 ? '东经 ' : '西经 ') + Math.abs(v).toFixed(5) + '°'; },
      searching: '搜救正在进行，救援人员正在安排。',
      onTheWay: function (n) { return n > 1 ? n + ' 支救援队已出发' : '救援队已出发'; },
      nearest: function (d) { return '最近的救援人员离您约 ' + d; },
      found: '救援人员报告已经找到您。',
      closed: '本次搜救已结束，本页不再发送位置。如果仍需要帮助，请拨打 110 或 119。',
      insecureTitle: '此页面无法获取位置',
      insecureText: '手机浏览器只允许加密（https://）页面获取位置，这个链接不是。请告诉接警员“位置链接不是 https”，并把您周围的情况告诉他们。',
      badLinkTitle: '链接不完整',
      badLinkText: '这个链接缺少一部分。请从短信里完整地重新打开链接，或请接警员重新发送。',
      invalidTitle: '链接无效',
      invalidText: '这个链接无法使用。请请接警员重新发送一个链接。',
      expiredTitle: '链接已过期',
      expiredText: '这个链接已经过期。如果仍需要帮助，请拨打 110，请接警员发送新的链接。',
      revokedTitle: '链接已停用',
      revokedText: '接警员已停用这个链接（可能已经发了新的链接）。请查看短信，或拨打 110。',
      deniedTitle: '没有位置权限',
      deniedText: '您没有允许本页获取位置。请按下面的方法打开，然后刷新本页：',
      deniedChrome: '安卓 Chrome 浏览器：点地址栏左边的图标 → 权限 → 位置 → 允许；并在手机设置里打开“位置信息”。',
      deniedWechat: '微信：点右上角“···” → 在浏览器中打开；或在手机设置 → 应用 → 微信 → 权限 → 位置信息 → 允许。',
      deniedSafari: '苹果 Safari：设置 → 隐私与安全性 → 定位服务 → 打开，再到 Safari 浏览器 → 位置 → 允许。',
      unavailableTitle: '暂时定不到位置',
      unavailableText: '请打开手机的定位（GPS）开关，到开阔处，远离高墙和密林。本页会继续尝试。',
      unsupportedTitle: '这个浏览器不能获取位置',
      unsupportedText: '请用手机自带的浏览器打开这个链接，或把周围的情况打电话告诉接警员。',
      errorTitle: '暂时连不上服务器',
      errorText: '正在重试。位置会先存在手机里，连上后自动发送。'
    },
    en: {
      title: 'Send your location to the rescuers',
      brand: 'Mountain rescue',
      other: '中文',
      headline: 'Rescuers are looking for you',
      intro: 'Tap the button below to send your location to the rescuers.',
      start: 'Send my location',
      starting: 'Getting your location…',
      lastSent: 'Last sent',
      accuracy: 'Accuracy',
      queued: 'Waiting to send',
      readoutTitle: 'If data fails, read this out over the phone:',
      cell: 'Grid cell',
      tips: 'If it is safe, stay where you are. Once your location is sent you can lock the phone to save battery; open this page again after moving or every half hour.',
      seen: 'The rescuers can see your location',
      locating: 'Getting your location… move into the open',
      sending: 'Sending your location…',
      offline: 'No network: your location is kept on the phone and sent when the network returns',
      retrying: 'Sending failed, trying again…',
      never: 'not yet',
      ago: ' ago',
      justNow: 'just now',
      sec: ' s',
      min: ' min',
      hour: ' h',
      meters: ' m',
      km: ' km',
      lat: function (v) { return Math.abs(v).toFixed(5) + '° ' + (v >= 0 ? 'N' : 'S'); },
      lng: function (v) { return Math.abs(v).toFixed(5) + '° ' + (v >= 0 ? 'E' : 'W'); },
      searching: 'The search is under way; rescuers are being sent.',
      onTheWay: function (n) { return n > 1 ? n + ' rescue teams are on the way' : 'A rescue team is on the way'; },
      nearest: function (d) { return 'The nearest rescuers are about ' + d + ' away'; },
      found: 'The rescuers report that they have found you.',
      closed: 'This search has ended; this page no longer sends your location. If you still need help, call 110 or 119.',
      insecureTitle: 'This page cannot get your location',
      insecureText: 'Phone browsers give a location only to secure (https://) pages, and this link is not one. Tell the operator "the location link is not https" and describe where you are.',
      badLinkTitle: 'The link is incomplete',
      badLinkText: 'Part of this link is missing. Open the whole link from the message again, or ask the operator to send it again.',
      invalidTitle: 'The link does not work',
      invalidText: 'This link cannot be used. Ask the operator to send you a new one.',
      expiredTitle: 'The link has expired',
      expiredText: 'This link has expired. If you still need help, call 110 and ask for a new link.',
      revokedTitle: 'The link was switched off',
      revokedText: 'The operator switched this link off (perhaps a new one was sent). Check your messages, or call 110.',
      deniedTitle: 'Location access is off',
      deniedText: 'This page was not allowed to get your location. Turn it on as follows, then reload this page:',
      deniedChrome: 'Android Chrome: tap the icon left of the address → Permissions → Location → Allow; and turn on Location in the phone\'s settings.',
      deniedWechat: 'WeChat: tap "···" at the top right → Open in browser; or phone Settings → Apps → WeChat → Permissions → Location → Allow.',
      deniedSafari: 'iPhone Safari: Settings → Privacy & Security → Location Services → On, then Safari → Location → Allow.',
      unavailableTitle: 'No location yet',
      unavailableText: 'Turn on the phone\'s location (GPS), move into the open, away from cliffs and dense trees. This page keeps trying.',
      unsupportedTitle: 'This browser cannot get a location',
      unsupportedText: 'Open the link in the phone\'s own browser, or describe where you are to the operator over the phone.',
      errorTitle: 'Cannot reach the server right now',
      errorText: 'Trying again. Your location is kept on the phone and sent once connected.'
    }
  };

  // How often a new position is queued while the phone stands still, and
  // how soon after the last one a clearly better or moved one is.
  var FIX_EVERY_MS = 15000;
  var FIX_SOON_MS = 3000;
  var BATCH_MAX = 50;
  var STATUS_EVERY_MS = 20000;
  var RETRY_MIN_MS = 2000;
  var RETRY_MAX_MS = 60000;

  var $ = function (id) { return document.getElementById(id); };
  var store = {};
  try { store = window.localStorage || {}; store.setItem('sar-probe', '1'); } catch (e) { store = memoryStorage(); }

  function memoryStorage() {
    var m = {};
    return {
      getItem: function (k) { return Object.prototype.hasOwnProperty.call(m, k) ? m[k] : null; },
      setItem: function (k, v) { m[k] = String(v); },
      removeItem: function (k) { delete m[k]; }
    };
  }

  var st = {
    lang: pickLang(),
    token: readToken(),
    qkey: '',          // queue key: a hash of the token (the token itself is not stored)
    incident: '',
    device: '',
    joined: false,
    nextSeq: 1,
    acked: 0,
    offset: 0,         // server clock minus phone clock, ms
    offsetKnown: false,
    queue: null,       // the durable queue (openQueue)
    queued: 0,
    inflight: false,
    retryMs: 0,
    retryTimer: 0,
    lastSentAt: 0,
    lastFix: null,     // last queued fix {t, lat, lng, acc}
    lastPos: null,     // last position from the browser
    lastT: 0,          // the time and place of the last queued reading (kept across reloads)
    lastLat: 0,
    lastLng: 0,
    cellSeq: 0,        // the sequence of the fix whose cell st.cell is
    queuedSeq: 0,      // the sequence of the last queued fix
    cell: '',
    watchId: null,
    stopped: false,    // link dead or incident closed: nothing more is sent
    battery: null,
    phase: '',
    netDown: false
  };

  function t(key) { return TEXT[st.lang][key]; }

  function pickLang() {
    var saved = store.getItem('sar-lang');
    if (saved === 'zh' || saved === 'en') { return saved; }
    var langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ''];
    for (var i = 0; i < langs.length; i++) {
      var l = String(langs[i]).toLowerCase();
      if (l.indexOf('zh') === 0) { return 'zh'; }
      if (l.indexOf('en') === 0) { return 'en'; }
    }
    return 'zh';
  }

  function readToken() {
    var h = String(location.hash || '').replace(/^#/, '');
    return /^sar_[A-Za-z0-9_-]{43}$/.test(h) ? h : '';
  }

  // FNV-1a of the token: names this link's queue without storing its secret.
  function hashOf(s) {
    var h = 0x811c9dc5;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = (h + ((h << 1) + (h << 4) + (h << 7) + (h << 8) + (h << 24))) >>> 0;
    }
    return ('0000000' + h.toString(16)).slice(-8);
  }

  // ---- rendering ----------------------------------------------------------

  function render() {
    document.documentElement.lang = st.lang === 'zh' ? 'zh-CN' : 'en';
    document.title = t('title');
    var els = document.querySelectorAll('[data-t]');
    for (var i = 0; i < els.length; i++) {
      var v = t(els[i].getAttribute('data-t'));
      if (typeof v === 'string') { els[i].textContent = v; }
    }
    $('lang').textContent = t('other');
    $('lang').lang = st.lang === 'zh' ? 'en' : 'zh-CN';
    if (st.watchId !== null && !st.lastPos) { $('start').textContent = t('starting'); }
    renderNotice();
    renderStatus();
    renderPhase();
  }

  var notice = null; // {kind, title, text, steps}

  function showNotice(kind) {
    notice = kind;
    renderNotice();
  }

  function clearNotice(kind) {
    if (notice === kind) { notice = null; renderNotice(); }
  }

  function renderNotice() {
    var box = $('notice');
    if (!notice) { box.hidden = true; return; }
    box.hidden = false;
    box.className = notice === 'unavailable' || notice === 'error' ? 'notice calm' : 'notice';
    box.setAttribute('data-kind', notice);
    $('notice-title').textContent = t(notice + 'Title');
    $('notice-text').textContent = t(notice + 'Text');
    var ol = $('notice-steps');
    while (ol.firstChild) { ol.removeChild(ol.firstChild); }
    if (notice === 'denied') {
      var order = ['deniedChrome', 'deniedWechat', 'deniedSafari'];
      var ua = navigator.userAgent || '';
      if (/MicroMessenger/.test(ua)) { order = ['deniedWechat', 'deniedChrome', 'deniedSafari']; }
      else if (/iPhone|iPad|iPod/.test(ua)) { order = ['deniedSafari', 'deniedWechat', 'deniedChrome']; }
      for (var i = 0; i < order.length; i++) {
        var li = document.createElement('li');
        li.textContent = t(order[i]);
        ol.appendChild(li);
      }
    }
  }

  function ago(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 10) { return t('justNow'); }
    if (s < 60) { return s + t('sec') + t('ago'); }
    if (s < 3600) { return Math.floor(s / 60) + t('min') + t('ago'); }
    return Math.floor(s / 3600) + t('hour') + t('ago');
  }

  function clock(ms) {
    var d = new Date(ms);
    var p = function (n) { return (n < 10 ? '0' : '') + n; };
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function distance(m) {
    if (m < 1000) { return Math.round(m / 100) * 100 + t('meters'); }
    return (Math.round(m / 100) / 10).toFixed(1) + t('km');
  }

  function renderStatus() {
    var started = st.watchId !== null || st.lastSentAt > 0 || st.queued > 0;
    $('status').hidden = !started;
    $('intro').hidden = st.watchId !== null || st.stopped; // "tap the button" once there is none
    if (!started) { return; }
    var state = $('state');
    var cls = 'state wait';
    var msg = t('locating');
    if (st.netDown && st.queued > 0) { msg = t('offline'); cls = 'state bad'; }
    else if (st.retryMs > 0 && st.queued > 0) { msg = t('retrying'); cls = 'state bad'; }
    else if (st.lastSentAt > 0) { msg = t('seen'); cls = 'state ok'; }
    else if (st.lastPos) { msg = t('sending'); }
    state.textContent = msg;
    state.className = cls;
    var open = st.lang === 'zh' ? '（' : ' (';
    var close = st.lang === 'zh' ? '）' : ')';
    $('last-sent').textContent = st.lastSentAt > 0 ? clock(st.lastSentAt) + open + ago(Date.now() - st.lastSentAt) + close : t('never');
    $('accuracy').textContent = st.lastPos ? '± ' + Math.round(st.lastPos.acc) + t('meters') : '—';
    $('queued-label').hidden = $('queued').hidden = st.queued === 0;
    $('queued').textContent = String(st.queued);
    var p = st.lastPos;
    $('readout').hidden = !p;
    if (p) {
      $('coords').textContent = t('lat')(p.lat) + '  ' + t('lng')(p.lng);
      // The cell only while it is the latest position's: read out after a
      // move, an old cell would send rescuers where the person was.
      $('cell').textContent = st.cell && st.cellSeq >= st.queuedSeq ? groups(st.cell) : '—';
    }
  }

  // groups splits a cell id into groups of four, to be read out.
  function groups(s) {
    var out = [];
    for (var i = 0; i < s.length; i += 4) { out.push(s.slice(i, i + 4)); }
    return out.join(' ');
  }

  function renderPhase() {
    var box = $('rescue');
    var ph = st.phase;
    if (!ph) { box.hidden = true; return; }
    box.hidden = false;
    var near = $('nearest');
    near.hidden = true;
    if (ph === 'CALLER_PHASE_FOUND') { $('phase').textContent = t('found'); return; }
    if (ph === 'CALLER_PHASE_CLOSED') { $('phase').textContent = t('closed'); return; }
    if (ph === 'CALLER_PHASE_RESCUERS_ON_THE_WAY') {
      $('phase').textContent = t('onTheWay')(st.teams || 1);
    } else {
      $('phase').textContent = t('searching');
    }
    if (typeof st.nearestM === 'number') {
      near.hidden = false;
      near.textContent = t('nearest')(distance(st.nearestM));
    }
  }

  // ---- the API --------------------------------------------------------------

  // api calls the JSON API; done(err, body) gets err = {status, code,
  // reason} for a refusal, or {status: 0} when the network failed.
  function api(method, path, body, done) {
    var x = new XMLHttpRequest();
    x.open(method, path, true);
    x.timeout = 20000;
    x.setRequestHeader('Authorization', 'Bearer ' + st.token);
    if (body) { x.setRequestHeader('Content-Type', 'application/json'); }
    var finished = false;
    var finish = function (err, res) {
      if (finished) { return; }
      finished = true;
      done(err, res);
    };
    x.onload = function () {
      var j = null;
      try { j = JSON.parse(x.responseText); } catch (e) { j = null; }
      if (x.status >= 200 && x.status < 300) { finish(null, j || {}); return; }
      var reason = '';
      var details = (j && j.details) || [];
      for (var i = 0; i < details.length; i++) {
        if (details[i] && details[i].reason) { reason = details[i].reason; }
      }
      finish({ status: x.status, code: j ? j.code : 0, reason: reason });
    };
    x.onerror = x.ontimeout = x.onabort = function () { finish({ status: 0 }); };
    x.send(body ? JSON.stringify(body) : null);
  }

  // refused handles an answer that no retry will change; it reports
  // whether it did.
  function refused(err) {
    if (err.status === 401) {
      showNotice(err.reason === 'CREDENTIAL_EXPIRED' ? 'expired' : err.reason === 'CREDENTIAL_REVOKED' ? 'revoked' : 'invalid');
      $('tips').hidden = true; // no position goes out: the advice about sending does not apply
      stop();
      return true;
    }
    if (err.reason === 'INCIDENT_CLOSED' || err.status === 404) { // closed, or gone after its retention
      st.phase = 'CALLER_PHASE_CLOSED';
      renderPhase();
      stop();
      return true;
    }
    return false;
  }

  // stop ends sharing for good (the link is dead or the search closed)
  // and forgets what the phone kept for this link: nothing of it can be
  // sent any more.
  function stop() {
    st.stopped = true;
    if (st.watchId !== null && navigator.geolocation) { navigator.geolocation.clearWatch(st.watchId); }
    st.watchId = null;
    $('start').hidden = true;
    var keys = ['sar-seq-', 'sar-last-', 'sar-sent-', 'sar-cell-', 'sar-sharing-', 'sar-device-', 'sar-queue-'];
    for (var i = 0; i < keys.length; i++) { store.removeItem(keys[i] + st.qkey); }
    if (st.queue) { st.queue.dropThrough(9007199254740991, function () {}); }
    memoryQueue = [];
    st.queued = 0;
    renderStatus();
  }

  function learnClock(serverTime, sentAt) {
    var server = Date.parse(serverTime || '');
    if (isNaN(server)) { return; }
    var now = Date.now();
    // The server's clock at the middle of the round trip.
    st.offset = server - (sentAt + (now - sentAt) / 2);
    st.offsetKnown = true;
  }

  // ---- the durable queue ----------------------------------------------------

  // openQueue gives a queue of {seq, t, off, fix} kept in IndexedDB, or in
  // localStorage where IndexedDB is missing or refused (private modes).
  function openQueue(done) {
    var settled = false;
    var finish = function (q) { if (!settled) { settled = true; done(q); } };
    var fallback = function () { finish(lsQueue()); };
    // Some browsers never answer an open (Safari 14): do not wait for ever.
    setTimeout(fallback, 2000);
    var idb;
    try { idb = window.indexedDB; } catch (e) { idb = null; }
    if (!idb) { fallback(); return; }
    var req;
    try { req = idb.open('sar-share', 1); } catch (e) { fallback(); return; }
    req.onupgradeneeded = function () { req.result.createObjectStore('fixes', { keyPath: 'id' }); };
    req.onerror = function () { fallback(); };
    req.onblocked = function () { fallback(); };
    req.onsuccess = function () { finish(idbQueue(req.result)); };
  }

  function pad(n) { var s = String(n); while (s.length < 16) { s = '0' + s; } return s; }

  function idbQueue(db) {
    var prefix = st.qkey + '/';
    var range = function () { return IDBKeyRange.bound(prefix, prefix + '\uffff'); };
    return {
      add: function (e, done) {
        var tx = db.transaction('fixes', 'readwrite');
        tx.objectStore('fixes').put({ id: prefix + pad(e.seq), e: e });
        tx.oncomplete = function () { done(null); };
        tx.onerror = tx.onabort = function () { done(tx.error || new Error('queue write failed')); };
      },
      // first gives the oldest entries, in sequence order.
      first: function (n, done) {
        var out = [];
        var tx = db.transaction('fixes', 'readonly');
        var cur = tx.objectStore('fixes').openCursor(range());
        cur.onsuccess = function () {
          var c = cur.result;
          if (c && out.length < n) { out.push(c.value.e); c['continue'](); }
        };
        tx.oncomplete = function () { done(out); };
        tx.onerror = function () { done(out); };
      },
      // dropThrough deletes the entries with seq <= through; done(count left).
      dropThrough: function (through, done) {
        var tx = db.transaction('fixes', 'readwrite');
        var os = tx.objectStore('fixes');
        os['delete'](IDBKeyRange.bound(prefix, prefix + pad(through)));
        var left = 0;
        var cnt = os.count(range());
        cnt.onsuccess = function () { left = cnt.result; };
        tx.oncomplete = function () { done(left); };
        tx.onerror = function () { done(-1); };
      },
      last: function (done) {
        var tx = db.transaction('fixes', 'readonly');
        var cur = tx.objectStore('fixes').openCursor(range(), 'prev');
        var v = null;
        cur.onsuccess = function () { if (cur.result) { v = cur.result.value.e; } };
        tx.oncomplete = function () { done(v); };
        tx.onerror = function () { done(null); };
      }
    };
  }

  function lsQueue() {
    var key = 'sar-queue-' + st.qkey;
    var read = function () { try { return JSON.parse(store.getItem(key) || '[]'); } catch (e) { return []; } };
    var write = function (a) { store.setItem(key, JSON.stringify(a)); };
    return {
      add: function (e, done) {
        try { var a = read(); a.push(e); write(a); done(null); } catch (err) { done(err); }
      },
      first: function (n, done) { done(read().slice(0, n)); },
      dropThrough: function (through, done) {
        var a = read().filter(function (e) { return e.seq > through; });
        try { write(a); } catch (e) { /* full: keep what is there */ }
        done(a.length);
      },
      last: function (done) { var a = read(); done(a.length ? a[a.length - 1] : null); }
    };
  }

  // ---- positions ------------------------------------------------------------

  // insecure reports a page that browsers give no position to. A browser
  // too old to say (no isSecureContext) is given the benefit of the doubt.
  function insecure() { return window.isSecureContext === false; }

  function start() {
    if (st.stopped) { return; }
    if (insecure()) { showNotice('insecure'); return; }
    if (!navigator.geolocation) { showNotice('unsupported'); return; }
    if (st.watchId !== null) { return; }
    store.setItem('sar-sharing-' + st.qkey, '1');
    $('start').disabled = true;
    $('start').textContent = t('starting');
    st.watchId = navigator.geolocation.watchPosition(onPosition, onPositionError,
      { enableHighAccuracy: true, maximumAge: 0, timeout: 60000 });
    renderStatus();
  }

  function onPosition(pos) {
    var c = pos.coords;
    if (!c || !isFinite(c.latitude) || !isFinite(c.longitude)) { return; }
    clearNotice('denied');
    clearNotice('unavailable');
    var fix = {
      lat: c.latitude,
      lng: c.longitude,
      horizontalAccuracyM: c.accuracy,
      source: 'FIX_SOURCE_BROWSER'
    };
    if (c.altitude !== null && isFinite(c.altitude)) { fix.altitudeM = c.altitude; }
    if (c.altitudeAccuracy !== null && isFinite(c.altitudeAccuracy)) { fix.verticalAccuracyM = c.altitudeAccuracy; }
    if (c.speed !== null && isFinite(c.speed) && c.speed >= 0) { fix.speedMps = c.speed; }
    if (c.heading !== null && isFinite(c.heading) && c.heading >= 0 && c.heading < 360) { fix.headingDeg = c.heading; }
    st.lastPos = { t: pos.timestamp || Date.now(), lat: c.latitude, lng: c.longitude, acc: c.accuracy, fix: fix, queued: false };
    $('start').hidden = true;
    consider();
    renderStatus();
  }

  var considerTimer = 0;

  // consider queues the latest position when it is due: at once for the
  // first; FIX_SOON_MS after the last queued one when it moved or is
  // clearly more accurate; else FIX_EVERY_MS after it. A position that is
  // not due yet waits for its time (a browser may not report again).
  function consider() {
    var p = st.lastPos;
    if (!p || p.queued || st.stopped) { return; }
    if (p.t === st.lastT && p.lat === st.lastLat && p.lng === st.lastLng) {
      p.queued = true; // this very reading was queued already (before a reload)
      return;
    }
    var last = st.lastFix;
    var wait = 0;
    if (last) {
      var changed = p.acc <= 0.7 * last.acc || metres(p, last) > Math.max(p.acc, last.acc, 20);
      wait = (changed ? FIX_SOON_MS : FIX_EVERY_MS) - (mono() - last.at);
    }
    if (wait > 0) {
      if (considerTimer) { clearTimeout(considerTimer); }
      considerTimer = setTimeout(function () { considerTimer = 0; consider(); }, wait);
      return;
    }
    p.queued = true;
    p.at = mono();
    st.lastFix = p;
    st.lastT = p.t;
    st.lastLat = p.lat;
    st.lastLng = p.lng;
    store.setItem('sar-last-' + st.qkey, JSON.stringify([p.t, p.lat, p.lng]));
    if (st.battery !== null) { p.fix.batteryPercent = st.battery; }
    enqueue(p.t, p.fix);
  }

  // mono is a clock that a change of the phone's time does not move.
  function mono() {
    return window.performance && performance.now ? performance.now() : Date.now();
  }

  function metres(a, b) {
    var r = 6371000;
    var rad = Math.PI / 180;
    var dLat = (b.lat - a.lat) * rad;
    var dLng = (b.lng - a.lng) * rad;
    var h = Math.sin(dLat / 2) * Math.sin(dLat / 2) +
      Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLng / 2) * Math.sin(dLng / 2);
    return 2 * r * Math.asin(Math.min(1, Math.sqrt(h)));
  }

  function onPositionError(err) {
    if (err.code === 1) { // PERMISSION_DENIED
      showNotice('denied');
      if (st.watchId !== null) { navigator.geolocation.clearWatch(st.watchId); }
      st.watchId = null;
      store.removeItem('sar-sharing-' + st.qkey);
      $('start').hidden = false;
      $('start').disabled = false;
      $('start').textContent = t('start');
    } else {
      showNotice('unavailable'); // watchPosition keeps trying
    }
    renderStatus();
  }

  // enqueue gives a fix the next sequence number and queues it. The time
  // is corrected when it is sent, with the offset known then unless one
  // was known already.
  // nextSeq hands out the next sequence number. Another tab of the same
  // link may have numbered fixes since: the counter in storage is the one
  // both follow.
  function nextSeq() {
    var seq = Math.max(st.nextSeq, parseInt(store.getItem('sar-seq-' + st.qkey) || '1', 10) || 1, st.acked + 1);
    st.nextSeq = seq + 1;
    store.setItem('sar-seq-' + st.qkey, String(st.nextSeq));
    st.queuedSeq = Math.max(st.queuedSeq, seq);
    return seq;
  }

  function enqueue(tPhone, fix) {
    var seq = nextSeq();
    var e = { seq: seq, t: tPhone, off: st.offsetKnown ? st.offset : null, fix: fix };
    st.queue.add(e, function (err) {
      if (err) { memoryQueue.push(e); } // storage full: still send it
      st.queued++;
      renderStatus();
      pump();
    });
  }

  var memoryQueue = [];

  // ---- sending --------------------------------------------------------------

  function pump() {
    if (st.inflight || st.stopped || !st.joined || st.retryTimer) { return; }
    st.inflight = true;
    st.queue.first(BATCH_MAX, function (entries) {
      try {
        send(entries.concat(memoryQueue));
      } catch (e) {
        st.inflight = false;
        sendFailed({ status: 0 }); // a bug must not stop sending: retry later
      }
    });
  }

  function send(entries) {
    entries = entries.filter(function (e) { return e.seq > st.acked; });
    entries.sort(function (a, b) { return a.seq - b.seq; });
    entries = entries.slice(0, BATCH_MAX);
    if (!entries.length) { st.inflight = false; return; }
    var fixes = [];
    for (var i = 0; i < entries.length; i++) {
      var e = entries[i];
      var f = {};
      for (var k in e.fix) { if (Object.prototype.hasOwnProperty.call(e.fix, k)) { f[k] = e.fix[k]; } }
      f.sequence = String(e.seq);
      f.time = new Date(e.t + (e.off !== null && e.off !== undefined ? e.off : st.offset)).toISOString();
      fixes.push(f);
    }
    var batch = { deviceId: st.device, batchId: String(entries[0].seq), fixes: fixes };
    if (entries[0].seq > st.acked + 1) {
      // Entries below it are gone from the phone (storage cleared, or
      // dropped as unsendable): the server must not wait for them.
      batch.skippedThrough = String(entries[0].seq - 1);
    }
    var sentAt = Date.now();
    api('POST', '/v1/incidents/' + encodeURIComponent(st.incident) + '/fixes', batch, function (err, res) {
      st.inflight = false;
      if (err) {
        if (err.status === 400 && err.code === 3) {
          // The server refuses the batch itself, as it will every time: drop
          // its oldest fix (the next batch skips it) rather than stop.
          dropFirst(entries[0].seq);
          return;
        }
        sendFailed(err);
        return;
      }
      acked(res.ack || {}, entries, sentAt);
    });
  }

  // acked takes in a batch's ack: what is acknowledged leaves the queue; a
  // fix refused for one of its optional fields or for its time is queued
  // again once, without them or with the time of now, rather than lost.
  function acked(ack, entries, sentAt) {
    learnClock(ack.serverTime, sentAt);
    st.retryMs = 0;
    st.netDown = false;
    clearNotice('error');
    var before = st.acked;
    // The server's number is the truth, even below ours (a restored
    // backup): the next batch then declares what the phone no longer has.
    st.acked = parseInt(ack.ackedThrough || '0', 10) || 0;
    var stored = ack.stored || [];
    if (stored.length) {
      st.cell = ack.cell || st.cell;
      st.cellSeq = parseInt(stored[stored.length - 1], 10) || 0;
      store.setItem('sar-cell-' + st.qkey, JSON.stringify([st.cell, st.cellSeq]));
    }
    if (stored.length || (ack.duplicates || []).length) {
      st.lastSentAt = Date.now();
      store.setItem('sar-sent-' + st.qkey, String(st.lastSentAt));
    }
    var rejected = ack.rejected || [];
    for (var i = 0; i < rejected.length; i++) {
      var r = rejected[i];
      var e = find(entries, parseInt(r.sequence, 10));
      if (!e || e.retried) { continue; }
      if (r.reason === 'REJECT_REASON_INVALID_FIELD') {
        var f = {};
        var keep = ['lat', 'lng', 'horizontalAccuracyM', 'source'];
        for (var k = 0; k < keep.length; k++) { f[keep[k]] = e.fix[keep[k]]; }
        requeue(e.t, e.off, f);
      } else if (r.reason === 'REJECT_REASON_INVALID_TIME') {
        requeue(Date.now(), st.offset, e.fix);
      }
    }
    if (Date.now() - statusAt > 5000) { pollStatus(); } // news rides on a working network
    memoryQueue = memoryQueue.filter(function (e) { return e.seq > st.acked; });
    var progress = st.acked > before || stored.length > 0;
    st.queue.dropThrough(st.acked, function (left) {
      st.queued = Math.max(0, left) + memoryQueue.length;
      renderStatus();
      if (st.queued > 0) {
        if (progress) { pump(); } else { sendFailed({ status: 200 }); } // no progress: back off
      }
    });
  }

  function find(entries, seq) {
    for (var i = 0; i < entries.length; i++) { if (entries[i].seq === seq) { return entries[i]; } }
    return null;
  }

  function requeue(t, off, fix) {
    var e = { seq: nextSeq(), t: t, off: off, fix: fix, retried: true };
    st.queue.add(e, function (err) { if (err) { memoryQueue.push(e); } });
  }

  function dropFirst(seq) {
    memoryQueue = memoryQueue.filter(function (e) { return e.seq !== seq; });
    st.queue.dropThrough(seq, function (left) {
      st.queued = Math.max(0, left) + memoryQueue.length;
      renderStatus();
      pump();
    });
  }

  function sendFailed(err) {
    if (refused(err)) { return; }
    st.netDown = err.status === 0;
    st.retryMs = Math.min(RETRY_MAX_MS, st.retryMs ? st.retryMs * 2 : RETRY_MIN_MS);
    var wait = st.retryMs / 2 + Math.random() * st.retryMs / 2;
    if (err.status !== 0 && err.status !== 200) { showNotice('error'); }
    if (st.retryTimer) { clearTimeout(st.retryTimer); }
    st.retryTimer = setTimeout(function () { st.retryTimer = 0; pump(); }, wait);
    renderStatus();
  }

  function retryNow() {
    if (st.retryTimer) { clearTimeout(st.retryTimer); st.retryTimer = 0; }
    if (!st.joined) { connect(); } else { pump(); }
  }

  // ---- joining and the rescue status -----------------------------------------

  var connectDelay = 0;
  var connecting = false;

  // connect learns the incident from the token and joins with this
  // phone's device id: the first join is the "link opened" event.
  function connect() {
    if (connecting || st.stopped) { return; }
    connecting = true;
    var again = function (err) {
      connecting = false;
      if (refused(err)) { return; }
      st.netDown = err.status === 0;
      if (err.status !== 0) { showNotice('error'); }
      connectDelay = Math.min(RETRY_MAX_MS, connectDelay ? connectDelay * 2 : RETRY_MIN_MS);
      setTimeout(connect, connectDelay / 2 + Math.random() * connectDelay / 2);
      renderStatus();
    };
    api('GET', '/v1/whoami', null, function (err, who) {
      if (err) { again(err); return; }
      var p = who.principal || {};
      st.incident = p.incidentId || '';
      if (!st.incident) { connecting = false; showNotice('invalid'); stop(); return; }
      var sentAt = Date.now();
      api('POST', '/v1/incidents/' + encodeURIComponent(st.incident) + ':join', { deviceId: st.device }, function (err2, j) {
        if (err2) { again(err2); return; }
        connecting = false;
        connectDelay = 0;
        st.netDown = false;
        clearNotice('error');
        learnClock(j.serverTime, sentAt);
        var acked = parseInt(j.ackedThrough || '0', 10);
        st.acked = Math.max(st.acked, acked);
        if (st.nextSeq <= st.acked) { st.nextSeq = st.acked + 1; }
        st.joined = true;
        st.queue.dropThrough(st.acked, function (left) {
          st.queued = Math.max(0, left) + memoryQueue.length;
          renderStatus();
          pump();
        });
        pollStatus();
      });
    });
  }

  var statusTimer = 0;
  var statusAt = 0;

  var statusInflight = false;

  // pollStatus asks for the search's status now, and again every
  // STATUS_EVERY_MS: one loop, however often it is called.
  function pollStatus() {
    if (statusInflight) { return; }
    if (statusTimer) { clearTimeout(statusTimer); statusTimer = 0; }
    if (!st.incident || st.phase === 'CALLER_PHASE_CLOSED') { return; }
    statusInflight = true;
    api('GET', '/v1/incidents/' + encodeURIComponent(st.incident) + '/caller-status', null, function (err, res) {
      statusInflight = false;
      if (err) {
        if (refused(err)) { return; }
      } else {
        statusAt = Date.now();
        var s = res.status || {};
        st.phase = s.phase || '';
        st.teams = s.teamsOnTheWay || 0;
        st.nearestM = typeof s.nearestRescuerM === 'number' ? s.nearestRescuerM : undefined;
        renderPhase();
        if (st.phase === 'CALLER_PHASE_CLOSED') { stop(); return; }
      }
      statusTimer = setTimeout(pollStatus, STATUS_EVERY_MS);
    });
  }

  // ---- start-up ---------------------------------------------------------------

  // deviceId is this phone's id for this link (a second link opened on the
  // same phone is another caller's participant, and needs its own).
  function deviceId() {
    var key = 'sar-device-' + st.qkey;
    var id = store.getItem(key);
    if (id && /^[A-Za-z0-9_-]{1,64}$/.test(id)) { return id; }
    var b = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(b);
    id = 'web-';
    for (var i = 0; i < b.length; i++) { id += ('0' + b[i].toString(16)).slice(-2); }
    store.setItem(key, id);
    return id;
  }

  function boot() {
    render();
    $('lang').onclick = function () {
      st.lang = st.lang === 'zh' ? 'en' : 'zh';
      store.setItem('sar-lang', st.lang);
      render();
    };
    if (!st.token) { showNotice('badLink'); $('start').hidden = true; $('tips').hidden = true; return; }
    st.qkey = hashOf(st.token);
    st.device = deviceId();
    st.nextSeq = Math.max(1, parseInt(store.getItem('sar-seq-' + st.qkey) || '1', 10) || 1);
    try {
      var last = JSON.parse(store.getItem('sar-last-' + st.qkey) || '[0,0,0]');
      st.lastT = last[0]; st.lastLat = last[1]; st.lastLng = last[2];
    } catch (e) { /* none */ }
    st.lastSentAt = parseInt(store.getItem('sar-sent-' + st.qkey) || '0', 10) || 0;
    try {
      var cell = JSON.parse(store.getItem('sar-cell-' + st.qkey) || '["",0]');
      st.cell = String(cell[0] || ''); st.cellSeq = +cell[1] || 0;
    } catch (e) { /* none */ }
    if (navigator.getBattery) {
      navigator.getBattery().then(function (b) {
        var read = function () { st.battery = Math.round(b.level * 100); };
        read();
        b.addEventListener('levelchange', read);
      }, function () { /* not given */ });
    }
    // Another link opened in this tab changes only the fragment: start
    // afresh for it.
    window.addEventListener('hashchange', function () { location.reload(); });
    window.addEventListener('online', retryNow);
    window.addEventListener('offline', function () { st.netDown = true; renderStatus(); });
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden) { retryNow(); pollStatus(); }
    });
    setInterval(renderStatus, 10000); // "x min ago" moves on
    openQueue(function (q) {
      st.queue = q;
      q.last(function (e) {
        if (e && e.seq >= st.nextSeq) { st.nextSeq = e.seq + 1; }
        q.dropThrough(0, function (left) { // counts what is queued
          st.queued = Math.max(0, left);
          if (insecure()) {
            showNotice('insecure');
            $('start').hidden = true;
          } else if (!navigator.geolocation) {
            showNotice('unsupported');
            $('start').hidden = true;
          } else {
            $('start').disabled = false;
            $('start').onclick = start;
            // A reload of a page that was sharing goes on sharing: the
            // permission is remembered, and a frightened person should
            // not have to find the button again.
            if (store.getItem('sar-sharing-' + st.qkey) === '1') { start(); }
          }
          renderStatus();
          connect();
        });
      });
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', boot);
  } else {
    boot();
  }
}());
