// ACE back office: a plain page over the HTTP API (no framework, no build step).
// Every piece of data is inserted with textContent / createElement, never as HTML.
"use strict";

(() => {
  const REFRESH_MS = 3000;
  const FINAL = new Set(["ended", "failed", "stopped"]);
  // The timeline's colours, by moment score: the one definition the bars and the legend are both
  // drawn from (a band holds scores from its `min` up to the next band's). Moments are scored 0-1;
  // fusion keeps peaks of 0.45 and more, so most bars are mid or high.
  const SCORE_BANDS = [
    { key: "low", min: 0, colour: "hsl(210, 65%, 62%)" },
    { key: "mid", min: 0.6, colour: "hsl(36, 90%, 50%)" },
    { key: "high", min: 0.8, colour: "hsl(354, 75%, 42%)" },
  ];
  // how the list of clips can be ordered (the control's values); rank first: the show's best first
  const ORDERS = new Set(["rank", "time"]);
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  const state = {
    tenant: null,
    timer: null,
    busy: false,
    streams: [],
    jobs: [],
    ramps: new Map(),      // stream id -> {level, share, history}
    selected: null,        // {id, kind: "stream" | "show", name, duration}
    moments: [],           // the selected stream's moments, in time order
    order: "rank",         // the clip list's order: "rank" (the best first) or "time"
    cards: new Map(),      // moment id -> {li, key}
    mark: null,            // selected moment id
    reviewed: new Map(),   // moment id -> {verdict, at}: a review made here wins over an older read
    productsSig: "",       // the product rows drawn last (redrawn only when they change)
    playing: null,         // the product segment id in the product player
  };

  // ------------------------------------------------------------------ helpers

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, "the server cannot be reached");
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!resp.ok) {
      const msg = data && typeof data.error === "string" ? data.error : `HTTP ${resp.status}`;
      if (resp.status === 401 && path !== "/session" && state.tenant !== null) showSignIn(msg);
      throw new ApiError(resp.status, msg);
    }
    return data;
  }

  // createElement with attributes; children are nodes or strings (strings become text nodes)
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else if (k === "class") e.className = v;
      else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  // only our own origin-relative paths ("/clips/..."), never another scheme or host
  function localPath(p) {
    return typeof p === "string" && p.startsWith("/") && !p.startsWith("//") ? p : null;
  }

  const enc = encodeURIComponent;

  function num(v, digits = 1, unit = "") {
    return typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) + unit : "–";
  }

  function clock(sec) {
    if (typeof sec !== "number" || !Number.isFinite(sec)) return "–";
    const s = Math.max(0, sec);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const ss = r.toFixed(1).padStart(4, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
  }

  function scoreBand(score) {
    const s = Number(score) || 0;
    let band = SCORE_BANDS[0];
    for (const b of SCORE_BANDS) if (s >= b.min) band = b;
    return band;
  }

  function bandRange(i) {
    const next = SCORE_BANDS[i + 1];
    const lo = SCORE_BANDS[i].min;
    if (!next) return `≥ ${lo.toFixed(1)}`;
    return i === 0 ? `< ${next.min.toFixed(1)}` : `${lo.toFixed(1)}–${next.min.toFixed(1)}`;
  }

  // the legend under the timeline, made from SCORE_BANDS (so it always shows the bars' colours)
  function renderLegend() {
    const items = SCORE_BANDS.map((b, i) => {
      const sw = el("i", { class: "sw", "data-testid": "legend-swatch", "data-band": b.key, "aria-hidden": "true" });
      sw.style.backgroundColor = b.colour;
      return el("span", { class: "legend-item", "data-testid": "legend-item", "data-band": b.key }, sw, `${b.key} ${bandRange(i)}`);
    });
    const weak = el("span", { class: "legend-weak", "data-testid": "legend-weak", title: WEAK_TITLE },
                    el("i", { class: "sw weak", "aria-hidden": "true" }), "dim: top few (not strong)");
    $("legend").replaceChildren("score: ", ...items, weak);
  }

  // rank 1 is the show's best moment; 0 (or missing) means the moment was not ranked
  function rankOf(m) {
    const r = Number(m.rank);
    return Number.isInteger(r) && r > 0 ? r : 0;
  }

  function rankText(m) {
    const r = rankOf(m);
    return r ? `#${r}` : "unranked";
  }

  // calibrated 0-100: "a confidence of 70 was right about 70% of the time on labelled shows"
  function confidenceText(m) {
    const c = Number(m.confidence);
    return Number.isFinite(c) ? `confidence ${Math.round(Math.min(100, Math.max(0, c)))}/100` : "confidence –";
  }

  // a weak moment is below the confidence it would need on its own: it is only one of the show's best few
  function isWeak(m) {
    return m.strong === false;
  }

  const WEAK_TITLE = "below the confidence a moment needs on its own: shown as one of the show's best few";

  // the clip list in the chosen order: by rank (the best first, unranked ones last by time) or by time
  function listOrder() {
    const byTime = (a, b) => a.start - b.start || String(a.id).localeCompare(String(b.id));
    if (state.order !== "rank") return state.moments.slice().sort(byTime);
    return state.moments.slice().sort((a, b) => {
      const ra = rankOf(a) || Infinity, rb = rankOf(b) || Infinity;
      return ra === rb ? byTime(a, b) : ra - rb;
    });
  }

  // a stream that can still move: its lag is live (a finished one's last lag is history, not shown)
  function isLive(s) {
    return !FINAL.has(s.status) && s.status !== "unavailable";
  }

  function setText(id, text) {
    $(id).textContent = text || "";
  }

  // ------------------------------------------------------------------ sign-in

  function showSignIn(message) {
    stopRefresh();
    state.tenant = null;
    clearData();
    $("loading").hidden = true;
    $("app").hidden = true;
    $("sign-out").hidden = true;
    setText("who", "");
    $("signin").hidden = false;
    setText("signin-error", message && message !== "an API token is needed (Authorization: Bearer <token>)" ? message : "");
    $("token").focus();
  }

  function showApp(tenant) {
    state.tenant = tenant;
    $("loading").hidden = true;
    $("signin").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    setText("who", `Signed in as ${tenant}`);
    $("who").dataset.tenant = tenant;
    refresh();
  }

  function clearData() {
    state.streams = [];
    state.jobs = [];
    state.ramps.clear();
    state.reviewed.clear();
    closeDetail();
    $("streams-body").replaceChildren();
    $("jobs-list").replaceChildren();
  }

  async function checkSession() {
    try {
      const me = await api("GET", "/me");
      showApp(me.tenant);
    } catch (e) {
      showSignIn(e.status === 401 ? "" : e.message);
    }
  }

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    setText("signin-error", "");
    if (!token) return;
    $("signin-submit").disabled = true;
    try {
      const got = await api("POST", "/session", { token });
      $("token").value = "";
      showApp(got.tenant);
    } catch (e) {
      setText("signin-error", e.message);
    } finally {
      $("signin-submit").disabled = false;
    }
  });

  $("sign-out").addEventListener("click", async () => {
    try { await api("DELETE", "/session"); } catch (e) { /* signed out anyway */ }
    showSignIn("");
  });

  // ------------------------------------------------------------------ refresh loop

  function stopRefresh() {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
  }

  function schedule() {
    stopRefresh();
    if (state.tenant !== null) state.timer = setTimeout(refresh, REFRESH_MS);
  }

  async function refresh() {
    if (state.tenant === null) return;
    if (state.busy || document.hidden) { schedule(); return; }
    state.busy = true;
    try {
      const [streams, jobs] = await Promise.all([api("GET", "/streams"), api("GET", "/jobs")]);
      if (state.tenant === null) return;
      state.streams = Array.isArray(streams) ? streams : [];
      state.jobs = Array.isArray(jobs) ? jobs : [];
      await loadRamps();
      renderStreams();
      renderJobs();
      if (state.selected) await loadDetail();
      setText("refresh-error", "");
      setText("streams-updated", `updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      if (e.status !== 401) setText("refresh-error", `Could not refresh: ${e.message}`);
    } finally {
      state.busy = false;
      schedule();
    }
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden && state.tenant !== null) refresh(); });

  async function loadRamps() {
    // the latest ramp decision of each live stream (finished ones keep their last answer)
    const want = state.streams.filter((s) => !FINAL.has(s.status) || !state.ramps.has(s.id)).slice(0, 50);
    await Promise.all(want.map(async (s) => {
      try {
        state.ramps.set(s.id, await api("GET", `/streams/${enc(s.id)}/ramp?limit=1`));
      } catch (e) {
        if (e.status === 401) throw e;
      }
    }));
  }

  // ------------------------------------------------------------------ streams

  function rampText(r) {
    if (!r || r.level === null || r.level === undefined) return "–";
    return typeof r.share === "number" ? `${r.level} (${(100 * r.share).toFixed(1)}%)` : String(r.level);
  }

  function renderStreams() {
    const body = $("streams-body");
    const rows = state.streams.map((s) => {
      const open = el("button", { type: "button", class: "link", "data-testid": "open-stream",
                                  "aria-label": `Open highlights of ${s.name || s.id}`,
                                  onclick: () => select({ id: s.id, kind: "stream", name: s.name || s.id }) },
                      s.name || s.id);
      const status = el("td", { "data-testid": "stream-status" },
                        el("span", { class: `badge st-${String(s.status).replace(/[^a-z]/g, "")}`, text: s.status }));
      if (s.error) status.append(el("div", { class: "error small", text: s.error }));
      const actions = el("td");
      if (isLive(s)) {
        actions.append(el("button", { type: "button", "data-testid": "stop-stream", "aria-label": `Stop ${s.name || s.id}`,
                                      onclick: (ev) => stopStream(s.id, ev.currentTarget) }, "Stop"));
      }
      const tr = el("tr", { "data-testid": "stream-row", "data-id": s.id,
                            class: state.selected && state.selected.id === s.id ? "selected" : null },
        el("td", null, open, el("div", { class: "muted small", text: s.id })),
        status,
        isLive(s) ? el("td", { "data-testid": "stream-lag", class: "nowrap", text: num(s.lag_s, 1, " s") })
                  : el("td", { "data-testid": "stream-lag", class: "muted", text: "–", title: `no live lag: ${s.status}` }),
        el("td", { text: clock(s.analysed_until) }),
        el("td", { "data-testid": "stream-moments", text: s.moments ?? "–" }),
        el("td", { "data-testid": "stream-clips", text: s.clips ?? "–" }),
        el("td", { text: num(s.clip_latency_p95_s, 1, " s") }),
        el("td", { text: s.reconnects ?? "–" }),
        el("td", { "data-testid": "stream-ramp", text: rampText(state.ramps.get(s.id)) }),
        actions);
      return tr;
    });
    body.replaceChildren(...rows);
    $("streams-empty").hidden = rows.length > 0;
  }

  async function stopStream(id, button) {
    button.disabled = true;
    try {
      await api("POST", `/streams/${enc(id)}/stop`);
    } catch (e) {
      setText("refresh-error", `Could not stop ${id}: ${e.message}`);
    }
    refresh();
  }

  $("stream-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setText("stream-error", "");
    setText("stream-ok", "");
    const raw = $("stream-products").value.trim();
    let products;
    if (raw.startsWith("[")) {  // a JSON list of products ({"id", "name", "aliases", "price", ...} or names)
      try { products = JSON.parse(raw); } catch (e) {
        setText("stream-error", `Products: not a valid JSON list (${e.message})`);
        return;
      }
    } else {
      products = raw.split(",").map((p) => p.trim()).filter(Boolean);
    }
    const body = {
      url: $("stream-url").value.trim(),
      name: $("stream-name").value.trim(),
      category: $("stream-category").value,
      products,
    };
    const events = $("stream-events").value.trim();
    if (events) body.events = events;
    const budget = $("stream-budget").value.trim();
    if (budget !== "") body.budget = Number(budget);
    $("stream-submit").disabled = true;
    try {
      const got = await api("POST", "/streams", body);
      setText("stream-ok", `Submitted: ${got.id}`);
      $("stream-url").value = "";
      $("stream-name").value = "";
      $("stream-products").value = "";
      $("stream-events").value = "";
      $("stream-budget").value = "";
      refresh();
    } catch (e) {
      setText("stream-error", e.message);
    } finally {
      $("stream-submit").disabled = false;
    }
  });

  // ------------------------------------------------------------------ batch jobs

  function renderJobs() {
    const list = $("jobs-list");
    const items = [...state.jobs].sort((a, b) => (b.submitted_at || 0) - (a.submitted_at || 0)).map((j) => {
      const pct = Math.round(100 * (Number(j.progress) || 0));
      const shows = el("ul", { class: "job-items" }, ...(j.items || []).map((it) => {
        const li = el("li", { "data-testid": "job-item", "data-show": it.show_id },
          el("span", { class: "src", text: it.source }), " ",
          el("span", { class: `badge st-${String(it.status).replace(/[^a-z]/g, "")}`, text: it.status }), " ",
          el("span", { class: "muted", text: it.status === "running" ? `${Math.round(100 * (it.progress || 0))}%`
                                                                     : `${it.moments ?? 0} moments, ${it.clips ?? 0} clips` }));
        if (it.error) li.append(el("div", { class: "error small", text: it.error }));
        if (it.status === "done") {
          li.append(" ", el("button", { type: "button", class: "link", "data-testid": "open-show",
                                        "aria-label": `Open highlights of ${it.source}`,
                                        onclick: () => select({ id: it.show_id, kind: "show", name: `${j.name} · ${it.source}`,
                                                                duration: it.duration }) }, "Open highlights"));
        }
        return li;
      }));
      return el("li", { "data-testid": "job", "data-id": j.id },
        el("div", { class: "job-head" },
          el("strong", { "data-testid": "job-name", text: j.name }), " ",
          el("span", { class: `badge st-${String(j.status).replace(/[^a-z]/g, "")}`, "data-testid": "job-status", text: j.status })),
        el("progress", { max: 100, value: pct, "aria-label": `progress of ${j.name}` }),
        el("span", { class: "muted small", "data-testid": "job-progress", text: ` ${pct}%` }),
        shows);
    });
    list.replaceChildren(...items);
    $("jobs-empty").hidden = items.length > 0;
  }

  $("job-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setText("job-error", "");
    setText("job-ok", "");
    const items = $("job-items").value.split("\n").map((l) => l.trim()).filter(Boolean)
      .map((l) => (/^https?:\/\//i.test(l) ? { url: l } : { path: l }));
    if (!items.length) return;
    $("job-submit").disabled = true;
    try {
      const got = await api("POST", "/jobs", { name: $("job-name").value.trim(), items });
      setText("job-ok", `Started: ${got.id}`);
      $("job-items").value = "";
      $("job-name").value = "";
      refresh();
    } catch (e) {
      setText("job-error", e.message);
    } finally {
      $("job-submit").disabled = false;
    }
  });

  // ------------------------------------------------------------------ one stream: timeline and clips

  function select(sel) {
    const same = state.selected && state.selected.id === sel.id;
    state.selected = sel;
    if (!same) {
      state.moments = [];
      state.cards.clear();
      state.mark = null;
      $("clips").replaceChildren();
      $("timeline").replaceChildren();
      $("ramp").replaceChildren();
      clearProducts();
    }
    $("detail").hidden = false;
    setText("detail-title", sel.name === sel.id ? sel.id : `${sel.name} (${sel.id})`);
    for (const tr of $("streams-body").children) tr.classList.toggle("selected", tr.dataset.id === sel.id);
    loadDetail().then(() => { if (!same) $("detail").scrollIntoView({ block: "start" }); });
  }

  function closeDetail() {
    state.selected = null;
    state.moments = [];
    state.cards.clear();
    state.mark = null;
    $("detail").hidden = true;
    $("clips").replaceChildren();
    $("timeline").replaceChildren();
    $("ramp").replaceChildren();
    clearProducts();
  }

  async function loadDetail() {
    const sel = state.selected;
    if (!sel) return;
    let moments, ramp = null, products = null;
    const asked = Date.now();
    try {
      [moments, ramp, products] = await Promise.all([
        api("GET", `/streams/${enc(sel.id)}/moments`),
        api("GET", `/streams/${enc(sel.id)}/ramp?limit=20`).catch((e) => { if (e.status === 401) throw e; return null; }),
        api("GET", `/streams/${enc(sel.id)}/products`).catch((e) => { if (e.status === 401) throw e; return null; }),
      ]);
    } catch (e) {
      if (state.selected === sel) setText("detail-meta", `Could not load: ${e.message}`);
      return;
    }
    if (state.selected !== sel) return;  // another stream was chosen meanwhile
    state.moments = Array.isArray(moments) ? moments.slice().sort((a, b) => a.start - b.start) : [];
    for (const m of state.moments) {
      const mine = state.reviewed.get(m.id);
      if (mine && mine.at >= asked) m.review = mine.verdict;
    }
    const live = state.streams.find((s) => s.id === sel.id);
    const ends = state.moments.map((m) => m.end);
    const segs = products && Array.isArray(products.segments) ? products.segments : [];
    const duration = Math.max(1, (live && live.analysed_until) || sel.duration || 0, ...ends,
                              ...segs.map((g) => Number(g.end) || 0));
    sel.span = duration;
    setText("detail-meta", live
      ? `${live.status} · analysed ${clock(live.analysed_until)}${isLive(live) ? ` · lag ${num(live.lag_s, 1, " s")}` : ""}`
        + ` · ${state.moments.length} moments`
      : `recorded show · ${clock(sel.duration)} · ${state.moments.length} moments`);
    setText("axis-end", clock(duration));
    renderRamp(ramp);
    renderTimeline(duration);
    renderProducts(products, duration);
    renderClips();
  }

  // ------------------------------------------------------------------ products: one timeline row each, ad-wording flags

  // "⚠ 最好 at 12:03.5": an ad-wording phrase heard, as a badge (the sentence in its title)
  function adWordBadge(h) {
    return el("span", { class: "adword", "data-testid": "ad-word", "data-phrase": h.phrase, "data-start": h.start,
                        title: h.text ? `heard: ${h.text}` : "ad-wording phrase heard",
                        text: `⚠ ${h.phrase} at ${clock(h.start)}` });
  }

  function adWordList(hits, testid) {
    const list = Array.isArray(hits) ? hits : [];
    const box = el("div", { class: "adwords", "data-testid": testid, role: list.length ? "note" : null,
                            "aria-label": list.length ? `${list.length} ad-wording phrase(s) heard` : null },
                   ...list.map(adWordBadge));
    box.hidden = !list.length;
    return box;
  }

  function clearProducts() {
    state.productsSig = "";
    state.playing = null;
    $("products").replaceChildren();
    $("products-box").hidden = true;
  }

  function renderProducts(doc, duration) {
    const catalog = doc && Array.isArray(doc.products) ? doc.products : [];
    const segs = doc && Array.isArray(doc.segments) ? doc.segments : [];
    const hits = doc && Array.isArray(doc.ad_words) ? doc.ad_words : [];
    const sig = JSON.stringify([catalog, segs, hits, Math.round(duration)]);
    if (sig === state.productsSig) return;  // unchanged: keep the rows (and the player) as they are
    state.productsSig = sig;
    $("products-box").hidden = !catalog.length && !segs.length && !hits.length;
    // one row per product of the list, in its order; a segment of a product not in the list gets a row too
    const rows = catalog.map((p) => ({ id: String(p.id), name: String(p.name || p.id), segs: [] }));
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const g of segs) {
      let r = byId.get(String(g.product));
      if (!r) { r = { id: String(g.product), name: String(g.name || g.product), segs: [] }; byId.set(r.id, r); rows.push(r); }
      r.segs.push(g);
    }
    const pct = (t) => `${Math.min(100, Math.max(0, (100 * (Number(t) || 0)) / duration)).toFixed(3)}%`;
    const out = rows.map((r) => {
      const track = el("div", { class: "ptrack", "data-testid": "product-track" });
      const chips = el("ul", { class: "psegs", "data-testid": "product-segments" });
      for (const g of r.segs) {
        const label = `${r.name} #${g.n}, ${clock(g.start)} to ${clock(g.end)}, ${confidenceText(g)}`;
        const bar = el("button", { type: "button", class: "pseg", "data-testid": "product-bar", "data-segment": g.id,
                                   "aria-label": label, title: label,
                                   onclick: () => playSegment(g, r.name) });
        bar.style.left = pct(g.start);
        bar.style.width = `max(3px, ${pct(Math.max(0, g.end - g.start))})`;
        bar.style.opacity = String(0.45 + 0.55 * Math.min(1, Math.max(0, (Number(g.confidence) || 0) / 100)));
        if ((g.ad_words || []).length) bar.classList.add("flagged");
        track.append(bar);
        const video = g.clip && localPath(g.clip.video);
        chips.append(el("li", { class: "pseg-item", "data-testid": "product-segment", "data-segment": g.id },
          el("strong", { text: `#${g.n}` }), " ",
          el("span", { "data-testid": "segment-time", text: `${clock(g.start)} – ${clock(g.end)}` }), " · ",
          el("span", { "data-testid": "segment-confidence", text: confidenceText(g) }),
          (g.heard || []).length ? el("span", { class: "muted small", text: ` · heard: ${(g.heard || []).join(", ")}` }) : null,
          " ",
          video ? el("button", { type: "button", class: "link", "data-testid": "play-product", onclick: () => playSegment(g, r.name) },
                     "▶ play") : el("span", { class: "muted small", text: "no clip yet" }),
          video ? " · " : null,
          video ? el("a", { href: video, target: "_blank", rel: "noopener", "data-testid": "product-clip-link" }, "open clip") : null,
          adWordList(g.ad_words, "segment-ad-words")));
      }
      for (const h of hits) {
        if (!r.segs.some((g) => g.id === h.segment_id)) continue;
        const flag = el("span", { class: "pflag", "data-testid": "product-flag", title: `⚠ ${h.phrase} at ${clock(h.start)}` });
        flag.style.left = pct((Number(h.start) + Number(h.end)) / 2);
        track.append(flag);
      }
      return el("li", { class: "prow", "data-testid": "product-row", "data-product": r.id },
        el("div", { class: "pname", "data-testid": "product-name", title: r.name, text: r.name }),
        el("div", null, track, r.segs.length ? chips : el("p", { class: "muted small", text: "Not pitched yet." })));
    });
    // phrases heard outside every product segment (still worth a look)
    const loose = hits.filter((h) => !h.segment_id);
    const player = el("div", { id: "product-player", "data-testid": "product-player", hidden: true });
    $("products").replaceChildren(el("ol", { class: "prows", "data-testid": "product-rows" }, ...out),
      loose.length ? el("div", { class: "loose" }, el("span", { class: "muted small", text: "Outside product segments: " }),
                        adWordList(loose, "loose-ad-words")) : null,
      player);
    const again = state.playing && segs.find((g) => g.id === state.playing);
    if (again) playSegment(again, (byId.get(String(again.product)) || {}).name || again.name);
  }

  function playSegment(g, name) {
    const player = $("product-player");
    const video = g.clip && localPath(g.clip.video);
    if (!player) return;
    state.playing = g.id;
    for (const b of $("products").querySelectorAll(".pseg")) b.classList.toggle("selected", b.dataset.segment === g.id);
    if (!video) {
      player.replaceChildren(el("p", { class: "muted small", text: `${name} #${g.n}: no clip yet.` }));
      player.hidden = false;
      return;
    }
    const current = player.querySelector("video");
    if (current && current.getAttribute("src") === video) { player.hidden = false; return; }
    const v = el("video", { controls: true, preload: "metadata", src: video, "data-testid": "product-video",
                            "aria-label": `${name} #${g.n}, ${clock(g.start)} to ${clock(g.end)}` });
    const captions = localPath(g.clip.captions);
    if (captions) v.append(el("track", { kind: "captions", src: captions, srclang: "zh", label: "Captions", default: true }));
    player.replaceChildren(el("p", { class: "small" }, el("strong", { text: `${name} #${g.n}` }),
                                  ` · ${clock(g.start)} – ${clock(g.end)} · ${confidenceText(g)}`), v);
    player.hidden = false;
  }

  function renderRamp(ramp) {
    const box = $("ramp");
    if (!ramp) { box.replaceChildren(); return; }
    const head = el("p", null, el("strong", null, "Ramp level: "),
                    el("span", { "data-testid": "ramp-level", text: rampText(ramp) }));
    const hist = (ramp.history || []).slice(-10).reverse();
    if (!hist.length) {
      box.replaceChildren(head, el("p", { class: "muted small", text: "No ramp decisions yet." }));
      return;
    }
    const table = el("table", { class: "small", "data-testid": "ramp-history" },
      el("thead", null, el("tr", null, ...["time", "level", "share", "reason"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", null, ...hist.map((d) => el("tr", null,
        el("td", { text: new Date(d.t * 1000).toLocaleTimeString() }),
        el("td", { text: d.level }),
        el("td", { text: typeof d.share === "number" ? `${(100 * d.share).toFixed(1)}%` : "–" }),
        el("td", { text: d.reason })))));
    box.replaceChildren(head, table);
  }

  function renderTimeline(duration) {
    const W = 1000, H = 40;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "group",
                              "aria-label": `highlight timeline, ${state.moments.length} moments over ${clock(duration)}`,
                              "data-testid": "timeline-svg" });
    root.append(svg("rect", { x: 0, y: 14, width: W, height: 12, class: "track" }));
    // each ranked mark's rank above it ("#1"), the better rank first where two would overlap
    const labels = el("div", { class: "mark-ranks", "data-testid": "mark-ranks", "aria-hidden": "true" });
    const gap = (100 * 30) / Math.max(200, $("timeline").clientWidth || 1000);  // % of the width a label needs
    const placed = [];
    for (const m of state.moments.filter((x) => rankOf(x)).sort((a, b) => rankOf(a) - rankOf(b))) {
      const centre = (100 * (m.start + m.end)) / 2 / duration;
      if (placed.some((c) => Math.abs(c - centre) < gap)) continue;
      placed.push(centre);
      const lab = el("span", { class: "mark-rank", "data-testid": "mark-rank", "data-for": m.id, "data-strong": String(!isWeak(m)),
                               title: `${rankText(m)} · ${confidenceText(m)}`, text: rankText(m) });
      lab.style.left = `${Math.min(100, Math.max(0, centre)).toFixed(2)}%`;
      labels.append(lab);
    }
    for (const m of state.moments) {
      const x = (W * m.start) / duration;
      const w = Math.max(3, (W * (m.end - m.start)) / duration);
      const band = scoreBand(m.score);
      const weak = isWeak(m) ? ", top few (not strong)" : "";
      const r = svg("rect", { x: x.toFixed(2), y: 4, width: w.toFixed(2), height: 32, rx: 1.5, fill: band.colour,
                              class: m.id === state.mark ? "mark selected" : "mark", tabindex: 0, role: "button",
                              "data-testid": "mark", "data-moment": m.id, "data-score": m.score, "data-band": band.key,
                              "data-rank": rankOf(m), "data-confidence": m.confidence ?? "", "data-strong": String(!isWeak(m)),
                              "aria-label": `moment ${rankText(m)}, ${clock(m.start)} to ${clock(m.end)}, ${confidenceText(m)}${weak}, `
                                            + `score ${num(m.score, 2)} (${band.key})` });
      const t = svg("title");
      t.textContent = `${rankText(m)} · ${confidenceText(m)}${isWeak(m) ? " · top few (not strong)" : ""} · `
                      + `${clock(m.start)}–${clock(m.end)} · score ${num(m.score, 2)} (${band.key})`;
      r.append(t);
      r.addEventListener("click", () => selectMoment(m.id, true));
      r.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); selectMoment(m.id, true); }
      });
      root.append(r);
    }
    $("timeline").replaceChildren(labels, root);
  }

  function selectMoment(id, scroll) {
    state.mark = id;
    for (const r of $("timeline").querySelectorAll("rect.mark")) {
      r.classList.toggle("selected", r.dataset.moment === id);
    }
    for (const [mid, c] of state.cards) c.li.classList.toggle("selected", mid === id);
    const card = state.cards.get(id);
    if (card && scroll) card.li.scrollIntoView({ block: "nearest" });
  }

  function verdictText(v) {
    return v === "approve" ? "approved" : v === "reject" ? "rejected" : "not reviewed";
  }

  function renderClips() {
    const list = $("clips");
    const seen = new Set();
    let order = [];
    for (const m of listOrder()) {
      seen.add(m.id);
      const video = m.clip && localPath(m.clip.video);
      // a card is rebuilt only when its clip appears, or is cut again in place (a provisional clip replaced)
      const key = video ? `clip:${video}:${m.clip.revision || 0}` : "none";
      let card = state.cards.get(m.id);
      if (!card || card.key !== key) {
        const li = buildCard(m);
        if (card) card.li.replaceWith(li);
        card = { li, key };
        state.cards.set(m.id, card);
      }
      updateCard(card.li, m);
      order.push(card.li);
    }
    for (const [mid, c] of state.cards) {
      if (!seen.has(mid)) { c.li.remove(); state.cards.delete(mid); }
    }
    const current = [...list.children];
    if (current.length !== order.length || current.some((n, i) => n !== order[i])) list.replaceChildren(...order);
    const nclips = state.moments.filter((m) => m.clip).length;
    setText("clips-count", `${nclips} clips, ${state.moments.length} moments`);
    if (!state.moments.length) list.replaceChildren(el("li", { class: "muted", text: "No moments yet." }));
  }

  function buildCard(m) {
    const li = el("li", { class: "card", "data-testid": "clip", "data-moment": m.id,
                          onclick: (ev) => { if (ev.target === li || ev.target.classList.contains("when")) selectMoment(m.id, false); } });
    const clip = m.clip;
    const again = clip && clip.revision ? `?revision=${clip.revision}` : "";  // cut again: not the cached file
    const video = clip && localPath(clip.video) && localPath(clip.video) + again;
    const thumb = clip && localPath(clip.thumbnail) && localPath(clip.thumbnail) + again;
    const captions = clip && localPath(clip.captions);
    // a vertical or square clip's thumbnail keeps its shape
    const [tw, th] = clip && clip.format === "vertical" ? [68, 120] : clip && clip.format === "square" ? [100, 100] : [160, 90];
    const head = el("div", { class: "card-head" },
      thumb ? el("img", { src: thumb, alt: `thumbnail at ${clock(m.start)}`, loading: "lazy", width: tw, height: th,
                          "data-testid": "thumbnail", "data-format": (clip && clip.format) || "source" }) : null,
      el("div", null,
        el("div", { class: "rank-line" },
           el("strong", { class: "rank", "data-testid": "clip-rank" }), " ",
           el("span", { class: "confidence", "data-testid": "clip-confidence" }), " ",
           el("span", { class: "tag weak-tag", "data-testid": "weak-tag", title: WEAK_TITLE, text: "top few", hidden: true }), " ",
           el("span", { class: "tag", "data-testid": "provisional-tag", text: "provisional", hidden: true,
                        title: "cut before the moment was final: it is confirmed or cut again in a few seconds" })),
        el("div", { class: "when" }, el("span", { "data-testid": "clip-time", text: `${clock(m.start)} – ${clock(m.end)}` }),
           " · score ", el("strong", { "data-testid": "clip-score", class: "score" })),
        el("ul", { class: "reasons", "data-testid": "reasons" }),
        el("blockquote", { class: "transcript", "data-testid": "transcript" }),
        adWordList([], "clip-ad-words")));
    li.append(head);
    if (video) {
      const v = el("video", { controls: true, preload: "metadata", src: video, "data-testid": "video",
                              "aria-label": `clip ${clock(m.start)} to ${clock(m.end)}` });
      if (captions) v.append(el("track", { kind: "captions", src: captions, srclang: "en", label: "Captions", default: true }));
      v.addEventListener("play", () => selectMoment(m.id, false));
      const approve = el("button", { type: "button", class: "approve", "data-testid": "approve", "aria-pressed": "false",
                                     onclick: () => review(m.id, "approve", li) }, "Approve");
      const reject = el("button", { type: "button", class: "reject", "data-testid": "reject", "aria-pressed": "false",
                                    onclick: () => review(m.id, "reject", li) }, "Reject");
      const publishBtn = el("button", { type: "button", class: "publish", "data-testid": "publish",
                                        title: "send the clip to your publish webhook",
                                        onclick: () => publish(m.id, li) }, "Publish");
      li.append(v, el("div", { class: "review" }, approve, reject, " ",
                      el("span", { class: "verdict", "data-testid": "verdict", role: "status" }),
                      el("span", { class: "error small", "data-testid": "review-error", role: "alert" })),
                el("div", { class: "review" }, publishBtn, " ",
                   el("span", { class: "small", "data-testid": "publication", role: "status" })));
    } else {
      li.append(el("p", { class: "muted small", text: "No clip for this moment (yet)." }));
    }
    return li;
  }

  function updateCard(li, m) {
    li.classList.toggle("selected", m.id === state.mark);
    li.querySelector('[data-testid="clip-score"]').textContent = num(m.score, 2);
    li.querySelector('[data-testid="clip-rank"]').textContent = rankText(m);
    li.querySelector('[data-testid="clip-confidence"]').textContent = confidenceText(m);
    li.querySelector('[data-testid="weak-tag"]').hidden = !isWeak(m);
    li.dataset.rank = String(rankOf(m));
    li.dataset.strong = String(!isWeak(m));
    const reasons = (m.reasons || []).map((r) => el("li", null,
      el("span", { class: "src", text: r.source }), ` ${num(r.score, 2)}`, r.detail ? ` — ${r.detail}` : ""));
    const ul = li.querySelector('[data-testid="reasons"]');
    const sig = JSON.stringify(m.reasons || []);
    if (ul.dataset.sig !== sig) { ul.replaceChildren(...reasons); ul.dataset.sig = sig; }
    const tq = li.querySelector('[data-testid="transcript"]');
    tq.textContent = m.transcript || "";
    tq.hidden = !m.transcript;
    const hits = (m.clip && Array.isArray(m.clip.ad_words) ? m.clip.ad_words : m.ad_words) || [];
    const box = li.querySelector('[data-testid="clip-ad-words"]');
    const hsig = JSON.stringify(hits);
    if (box.dataset.sig !== hsig) { box.replaceWith(adWordList(hits, "clip-ad-words")); }
    li.querySelector('[data-testid="clip-ad-words"]').dataset.sig = hsig;
    li.dataset.adWords = String(hits.length);
    const provisional = !!(m.clip && m.clip.state === "provisional");
    li.querySelector('[data-testid="provisional-tag"]').hidden = !provisional;
    li.dataset.state = m.clip ? m.clip.state || "final" : "";
    const pub = li.querySelector('[data-testid="publish"]');
    if (pub && !pub.dataset.busy) pub.disabled = provisional;  // published once final
    showVerdict(li, m.review);
  }

  function showVerdict(li, verdict) {
    const span = li.querySelector('[data-testid="verdict"]');
    if (!span) return;
    span.textContent = verdictText(verdict);
    span.dataset.verdict = verdict || "";
    li.dataset.review = verdict || "";
    li.querySelector('[data-testid="approve"]').setAttribute("aria-pressed", String(verdict === "approve"));
    li.querySelector('[data-testid="reject"]').setAttribute("aria-pressed", String(verdict === "reject"));
  }

  async function review(mid, verdict, li) {
    const buttons = li.querySelectorAll(".review button");
    buttons.forEach((b) => { b.disabled = true; });
    li.querySelector('[data-testid="review-error"]').textContent = "";
    try {
      const got = await api("POST", `/clips/${enc(mid)}/review`, { verdict, note: "" });
      const m = state.moments.find((x) => x.id === mid);
      if (m) m.review = got.verdict;
      state.reviewed.set(mid, { verdict: got.verdict, at: Date.now() });
      showVerdict(li, got.verdict);
    } catch (e) {
      li.querySelector('[data-testid="review-error"]').textContent = e.message;
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  function publicationText(p) {
    if (!p) return "";
    if (p.status === "sent") return `published${p.remote_id ? ` (${p.remote_id})` : ""}`;
    if (p.status === "failed") return `not published: ${p.last_error || "the webhook failed"}`;
    return `publishing… (attempt ${p.attempts || 1})`;
  }

  async function publish(mid, li) {
    const btn = li.querySelector('[data-testid="publish"]');
    const out = li.querySelector('[data-testid="publication"]');
    btn.disabled = true;
    btn.dataset.busy = "1";
    out.classList.remove("error");
    try {
      let p = await api("POST", `/clips/${enc(mid)}/publish`);
      out.textContent = publicationText(p);
      for (let i = 0; i < 60 && p.status === "pending"; i++) {  // delivery runs in the background
        await new Promise((ok) => setTimeout(ok, 1000));
        p = await api("GET", `/clips/${enc(mid)}/publication`);
        out.textContent = publicationText(p);
      }
      out.dataset.status = p.status;
    } catch (e) {
      out.classList.add("error");
      const provisional = e.status === 409 && /provisional/.test(e.message || "");
      out.textContent = e.status === 409 && !provisional ? "no publish webhook is set (PUT /settings/publish)" : e.message;
      out.dataset.status = "error";
    } finally {
      delete btn.dataset.busy;
      btn.disabled = li.dataset.state === "provisional";
    }
  }

  $("clip-order").value = state.order;
  $("clip-order").addEventListener("change", (ev) => {
    if (!ORDERS.has(ev.target.value)) return;
    state.order = ev.target.value;
    if (state.selected) renderClips();
  });

  renderLegend();
  checkSession();
})();
