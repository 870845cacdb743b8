// gridsync office dashboard: live updates and countdowns. Embedded in the server binary; no
// framework, nothing loaded from elsewhere. Pages work without it, only less up to date.
(function () {
  'use strict';

  // Deadlines count down in place; the server renders the first value. Past the deadline the
  // cell says what is left to do (data-after), not how late: a report on the board has reached
  // the office, and whether it did so in time is shown beside it.
  function tick() {
    document.querySelectorAll('.countdown[data-deadline]').forEach(function (el) {
      var left = Math.floor((Date.parse(el.dataset.deadline) - Date.now()) / 60000);
      if (left < 0) {
        el.textContent = el.dataset.after || '';
        el.classList.add('warn');
      } else {
        el.textContent = left + ' ' + (el.dataset.min || 'min');
      }
    });
  }

  // The time now in the community's time zone (the server's --utc-offset-minutes, which the
  // page carries), like every other time on the page, whatever the browser's zone.
  function serverClock(offsetMinutes) {
    var t = new Date(Date.now() + offsetMinutes * 60000);
    function two(n) { return (n < 10 ? '0' : '') + n; }
    return two(t.getUTCHours()) + ':' + two(t.getUTCMinutes()) + ':' + two(t.getUTCSeconds());
  }

  // Parts of a page marked data-live-src are fetched again when the relay says one of the
  // user's grids moved (Server-Sent Events from /events).
  var live = Array.prototype.slice.call(document.querySelectorAll('[data-live-src]'));
  var state = document.querySelector('.live-state');
  var refreshed = 0;

  function refresh(el) {
    var src = el.dataset.liveSrc;
    if (!src) { return; }
    fetch(src, { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        el.innerHTML = html;
        refreshed += 1;
        document.body.dataset.refreshed = String(refreshed);
        if (state) {
          var offset = Number(state.dataset.utcOffsetMinutes) || 0;
          state.textContent = '● ' + (state.dataset.liveLabel || '') + ' ' + serverClock(offset);
        }
        tick();
      })
      .catch(function () { if (state) { state.classList.add('offline'); } });
  }

  if (live.length && window.EventSource) {
    var timer = null;
    var events = new EventSource('/events');
    events.addEventListener('changed', function () {
      clearTimeout(timer);
      timer = setTimeout(function () { live.forEach(refresh); }, 250);
    });
    events.onopen = function () {
      document.body.dataset.live = 'open';
      if (state) { state.classList.remove('offline'); }
    };
    events.onerror = function () { if (state) { state.classList.add('offline'); } };
  }

  tick();
  setInterval(tick, 15000);
})();
