// anywidget front end of edwidgets.ui.StructureView3D: a 3Dmol.js viewer whose models (XYZ text
// plus a 3Dmol style per model) and unit-cell edges are synced traits.  On every change the models
// are rebuilt and the previous camera (getView/setView) is restored, so live updates never reset
// the user's rotation or zoom.  3Dmol.js comes from the `js_source` trait (a local file read by
// Python) or is fetched from `js_url`; it is evaluated once per page with AMD/CommonJS hidden so the
// UMD bundle always sets a global.

function load3Dmol(model) {
  if (window.$3Dmol && window.$3Dmol.createViewer) return Promise.resolve(window.$3Dmol);
  if (!window.__edwidgets3DmolPromise) {
    const source = model.get("js_source");
    const url = model.get("js_url");
    const text = source
      ? Promise.resolve(source)
      : fetch(url).then((r) => {
          if (!r.ok) throw new Error(`HTTP ${r.status} for ${url}`);
          return r.text();
        });
    window.__edwidgets3DmolPromise = text.then((code) => {
      // eslint-disable-next-line no-new-func
      new Function("define", "exports", "module", code).call(window, undefined, undefined, undefined);
      const lib = window.$3Dmol || window["3Dmol"];
      if (!lib || !lib.createViewer) throw new Error("3Dmol.js ran but defined no $3Dmol");
      window.$3Dmol = lib;
      return lib;
    });
    window.__edwidgets3DmolPromise.catch(() => {
      window.__edwidgets3DmolPromise = undefined; // allow a retry with another source
    });
  }
  return window.__edwidgets3DmolPromise;
}

function render({ model, el }) {
  const container = document.createElement("div");
  container.className = "edw-3dmol";
  container.style.position = "relative";
  container.style.width = model.get("width");
  container.style.height = model.get("height");
  container.style.minWidth = "200px";
  container.style.minHeight = "200px";
  el.appendChild(container);

  let viewer = null;
  let renders = 0;
  let framed = false; // zoomTo once, on the first draw that has something to show
  let pending = false;

  const draw = () => {
    pending = false;
    if (!viewer) return;
    const tic = performance.now();
    const keepCamera = framed;
    const view = keepCamera ? viewer.getView() : null;
    viewer.removeAllModels();
    viewer.removeAllShapes();
    viewer.removeAllLabels();
    for (const entry of model.get("models")) {
      if (!entry.xyz) continue;
      const m = viewer.addModel(entry.xyz, "xyz");
      m.setStyle({}, entry.style || { sphere: { radius: 0.4 } });
      for (const label of entry.labels || []) {
        viewer.addLabel(label.text, {
          position: { x: label.x, y: label.y, z: label.z },
          fontSize: 11,
          fontColor: "black",
          backgroundColor: "white",
          backgroundOpacity: 0.6,
          inFront: true,
        });
      }
    }
    // invisible corner atoms so that zoomTo frames the whole cell, not only the atoms
    let frame = null;
    const corners = model.get("cell_edges").flat();
    if (corners.length) {
      const xyz = [String(corners.length), "cell"].concat(corners.map((p) => `X ${p[0]} ${p[1]} ${p[2]}`)).join("\n");
      frame = viewer.addModel(xyz + "\n", "xyz");
      // hidden atoms may be left out of the extent, so give them tiny transparent spheres
      frame.setStyle({}, { sphere: { radius: 0.001, opacity: 0.0 } });
    }
    for (const edge of model.get("cell_edges")) {
      const [p, q] = edge;
      viewer.addCylinder({
        start: { x: p[0], y: p[1], z: p[2] },
        end: { x: q[0], y: q[1], z: q[2] },
        radius: 0.025,
        color: "#555555",
        fromCap: 1,
        toCap: 1,
      });
    }
    for (const label of model.get("axis_labels")) {
      viewer.addLabel(label.text, {
        position: { x: label.x, y: label.y, z: label.z },
        fontSize: 13,
        fontColor: label.color || "#333333",
        showBackground: false,
      });
    }
    if (keepCamera) {
      viewer.setView(view);
    } else if (frame || model.get("models").length) {
      viewer.zoomTo(frame ? { model: frame } : {});
      framed = true;
    }
    viewer.render();
    renders += 1;
    container.dataset.renders = String(renders);
    container.dataset.drawMs = String(Math.round(performance.now() - tic));
  };
  // coalesce bursts of trait changes into one draw per animation frame
  const scheduleDraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(draw);
  };

  load3Dmol(model)
    .then((lib) => {
      viewer = lib.createViewer(container, { backgroundColor: model.get("background") });
      container.__edwidgetsViewer = viewer;
      draw();
    })
    .catch((err) => {
      container.textContent = `3D view unavailable: ${err.message}`;
      model.set("load_error", String(err.message));
      model.save_changes();
    });

  const redraw = () => scheduleDraw();
  model.on("change:models", redraw);
  model.on("change:cell_edges", redraw);
  const observer = new ResizeObserver(() => {
    if (viewer) {
      viewer.resize();
      viewer.render();
    }
  });
  observer.observe(container);
  return () => {
    observer.disconnect();
    model.off("change:models", redraw);
    model.off("change:cell_edges", redraw);
  };
}

export default { render };
