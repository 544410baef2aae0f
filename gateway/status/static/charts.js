// Line charts on a <canvas>, drawn by hand: the page needs time series with a title, an axis,
// a legend and the latest value, and no chart library may be copied into the repository.
"use strict";

const Charts = (() => {
  const PAD = { left: 48, right: 12, top: 24, bottom: 22 };

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * power >= value) return step * power;
    }
    return 10 * power;
  }

  function clock(seconds) {
    const d = new Date(seconds * 1000);
    return d.toTimeString().slice(0, 8);
  }

  // series: [{name, color, points: [[unixSeconds, value|null], ...]}]
  // options: {title, format(v) -> text, min, max}
  function line(canvas, series, options) {
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "12px system-ui, sans-serif";
    const format = options.format || ((v) => v.toFixed(1));

    let drawn = 0;
    let t0 = Infinity, t1 = -Infinity, vmax = -Infinity;
    for (const s of series) {
      for (const [t, v] of s.points) {
        if (v === null || v === undefined || !isFinite(v)) continue;
        t0 = Math.min(t0, t); t1 = Math.max(t1, t); vmax = Math.max(vmax, v);
      }
    }
    ctx.fillStyle = "#1d2430";
    ctx.fillText(options.title, PAD.left, 15);
    if (!isFinite(t0)) {
      ctx.fillStyle = "#6b7483";
      ctx.fillText("no data yet", width / 2 - 30, height / 2);
      canvas.dataset.points = "0";
      return;
    }
    if (t1 === t0) t1 = t0 + 1;
    const vmin = options.min !== undefined ? options.min : 0;
    const top = options.max !== undefined ? options.max : niceMax(vmax);
    const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (width - PAD.left - PAD.right);
    const y = (v) => height - PAD.bottom - ((v - vmin) / (top - vmin || 1)) * (height - PAD.top - PAD.bottom);

    // grid and axis labels
    ctx.strokeStyle = "#e3e6eb";
    ctx.fillStyle = "#6b7483";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = vmin + ((top - vmin) * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(PAD.left, yy); ctx.lineTo(width - PAD.right, yy); ctx.stroke();
      ctx.fillText(format(v), 2, yy + 4);
    }
    ctx.fillText(clock(t0), PAD.left, height - 5);
    const right = clock(t1);
    ctx.fillText(right, width - PAD.right - ctx.measureText(right).width, height - 5);

    // lines and legend with the latest value
    let legendX = width - PAD.right;
    for (const s of [...series].reverse()) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.8;
      ctx.beginPath();
      let open = false, last = null;
      for (const [t, v] of s.points) {
        if (v === null || v === undefined || !isFinite(v)) { open = false; continue; }
        if (open) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
        open = true; last = v; drawn++;
      }
      ctx.stroke();
      const text = `${s.name} ${last === null ? "–" : format(last)}`;
      legendX -= ctx.measureText(text).width + 18;
      ctx.fillStyle = s.color;
      ctx.fillRect(legendX, 7, 10, 10);
      ctx.fillStyle = "#1d2430";
      ctx.fillText(text, legendX + 13, 16);
    }
    canvas.dataset.points = String(drawn);
  }

  return { line };
})();
