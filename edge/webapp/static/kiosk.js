// PneumoEdge kiosk: drag-and-drop onto the upload area, a preview, no double submits, print button,
// the heatmap's strength slider.
// Everything works without this script too: it only makes the touch screen nicer.
"use strict";

(function () {
  function setupUpload(form) {
    const zone = document.getElementById("dropzone");
    const text = document.getElementById("dz-text");
    const preview = document.getElementById("preview");
    const inputs = Array.from(form.querySelectorAll('input[type="file"]'));

    function show(file) {
      text.textContent = file.name ? "Ready: " + file.name : "Ready";
      if (file.type && file.type.startsWith("image/")) {
        if (preview.src) URL.revokeObjectURL(preview.src);
        preview.src = URL.createObjectURL(file);
        preview.hidden = false;
      } else {
        preview.hidden = true;
      }
    }

    inputs.forEach(function (input) {
      input.addEventListener("change", function () {
        if (!input.files.length) return;
        inputs.forEach(function (other) { if (other !== input) other.value = ""; });
        show(input.files[0]);
      });
    });

    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      const files = event.dataTransfer.files;
      if (!files.length) return;
      inputs[0].files = files;
      inputs.slice(1).forEach(function (other) { other.value = ""; });
      show(files[0]);
    });

    // Coming back with the browser's Back button must not leave the button stuck on "Assessing…".
    window.addEventListener("pageshow", function () {
      const button = form.querySelector('button[type="submit"]');
      button.disabled = false;
      button.textContent = button.dataset.label || button.textContent;
    });

    form.addEventListener("submit", function () {
      const button = form.querySelector('button[type="submit"]');
      button.dataset.label = button.dataset.label || button.textContent;
      button.disabled = true;
      button.textContent = form.dataset.busyLabel || "Working…";
    });
  }

  // The slider fades the heatmap layer (100: as drawn); without this script the checkbox alone
  // shows or hides it, so the slider stays hidden.
  function setupHeatmap(slider) {
    const layer = document.getElementById("heat-layer");
    document.getElementById("opacity-control").hidden = false;
    function apply() { layer.style.opacity = String(slider.value / 100); }
    slider.addEventListener("input", apply);
    apply();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const slider = document.getElementById("heat-opacity");
    if (slider) setupHeatmap(slider);
    const form = document.querySelector("form.upload");
    if (form) setupUpload(form);
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.addEventListener("click", function () { window.print(); });
    });
  });
})();
