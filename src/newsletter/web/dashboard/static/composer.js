// The campaign form's composer: a Markdown toolbar, image upload and a live preview.
// Without this script the form still works: the text is plain Markdown typed by hand,
// images are added by their web address, and "Show preview" renders into the frame.
"use strict";

(function () {
  const composer = document.querySelector(".composer");
  if (!composer) return;
  const form = composer.closest("form");
  const text = document.getElementById("content");
  const frame = document.getElementById("composer-preview");
  const previewButton = document.getElementById("preview-button");
  const previewError = document.getElementById("content-preview-error");
  const uploadStatus = document.getElementById("upload-status");

  // -- the toolbar: each button wraps the selection, or inserts an example to overwrite --
  function replaceSelection(before, after, placeholder) {
    const start = text.selectionStart;
    const end = text.selectionEnd;
    const chosen = text.value.slice(start, end) || placeholder;
    text.setRangeText(before + chosen + after, start, end, "end");
    // Leave the words selected, so typing replaces the example.
    text.setSelectionRange(start + before.length, start + before.length + chosen.length);
    text.focus();
    text.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function startOfLines(prefix, placeholder) {
    const start = text.value.lastIndexOf("\n", text.selectionStart - 1) + 1;
    const end = text.selectionEnd;
    const lines = (text.value.slice(start, end) || placeholder).split("\n");
    const block = lines.map((line) => prefix + line).join("\n");
    text.setRangeText(block, start, end, "end");
    text.focus();
    text.dispatchEvent(new Event("input", { bubbles: true }));
  }

  const actions = {
    bold: () => replaceSelection("**", "**", "bold text"),
    italic: () => replaceSelection("*", "*", "italic text"),
    heading: () => startOfLines("## ", "Heading"),
    list: () => startOfLines("- ", "List item"),
    link: () => {
      const url = window.prompt("Address of the link (https://…)", "https://");
      if (url) replaceSelection("[", `](${url})`, "link text");
    },
    image: () => {
      const url = window.prompt("Address of the image (https://…)", "https://");
      if (url) replaceSelection("![", `](${url})`, "image description");
    },
  };

  const toolbar = composer.querySelector(".md-toolbar");
  toolbar.hidden = false;
  toolbar.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-md]");
    if (button) actions[button.dataset.md]();
  });

  // -- image upload: kept by the server, inserted as Markdown at the cursor --
  const upload = composer.querySelector(".md-upload");
  const fileInput = document.getElementById("image-upload");
  upload.hidden = false;
  fileInput.addEventListener("change", async () => {
    const file = fileInput.files[0];
    if (!file) return;
    uploadStatus.textContent = `Uploading ${file.name}…`;
    const body = new FormData();
    body.append("image", file);
    body.append("csrf", form.elements.csrf.value);
    let answer;
    try {
      const response = await fetch(composer.dataset.uploadUrl, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": form.elements.csrf.value },
      });
      answer = await response.json().catch(() => ({
        error: response.status === 413
          ? "The image is too large: at most 5 MB."
          : "The image could not be uploaded. Reload the page and try again.",
      }));
    } catch (error) {
      answer = { error: "The image could not be uploaded: the server did not answer." };
    }
    fileInput.value = "";
    if (answer.error) {
      uploadStatus.textContent = answer.error;
      uploadStatus.className = "error";
      return;
    }
    uploadStatus.className = "muted";
    uploadStatus.textContent = `${file.name} added. Describe the image between the brackets for people who cannot see it.`;
    // An image stands in a paragraph of its own, after the line the cursor is on.
    const lineEnd = text.value.indexOf("\n", text.selectionEnd);
    const at = lineEnd === -1 ? text.value.length : lineEnd;
    const before = text.value.slice(0, at).trim() ? "\n\n" : "";
    text.focus();
    text.setSelectionRange(at, at);
    replaceSelection(`${before}![`, `](${answer.url})\n`, "image description");
  });

  // -- the design picker's thumbnails: a button on each chooses it in the list --
  const designs = document.getElementById("template");
  function markChosen() {
    for (const item of document.querySelectorAll(".design-thumbnails li")) {
      item.classList.toggle("chosen", item.dataset.design === designs.value);
    }
  }
  for (const button of document.querySelectorAll("[data-use-design]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      designs.value = button.dataset.useDesign;
      designs.dispatchEvent(new Event("change", { bubbles: true }));
    });
  }
  designs.addEventListener("change", markChosen);

  // -- the live preview: the form posted into a frame, a moment after typing stops --
  // Each preview goes into a new frame, shown once it has loaded: the old one stays
  // until then (no flicker), and a new frame's first page adds nothing to the
  // browser's history, so Back still leaves the form.
  let shown = frame;
  let shownSeq = 0;
  let seq = 0;

  function showError(from) {
    let message = "";
    try {
      const marker = from.contentDocument.querySelector("meta[name=composer-error]");
      message = marker ? marker.content : "";
    } catch (error) {
      message = "";
    }
    // An error is shown by the field, in the page's words, and the field marked.
    previewError.textContent = message;
    previewError.hidden = !message;
    if (message) {
      text.setAttribute("aria-invalid", "true");
      text.setAttribute("aria-describedby", "content-preview-error");
    } else if (!document.getElementById("content-error")) {
      text.removeAttribute("aria-invalid");
      text.removeAttribute("aria-describedby");
    }
  }

  function render() {
    seq += 1;
    const mine = seq;
    const next = document.createElement("iframe");
    for (const name of ["title", "sandbox", "class"]) {
      if (frame.hasAttribute(name)) next.setAttribute(name, frame.getAttribute(name));
    }
    next.name = `composer-preview-${mine}`;
    next.hidden = true;
    shown.after(next);
    next.addEventListener("load", () => {
      // The empty page every new frame starts with is not the preview.
      if (!next.contentDocument || next.contentDocument.URL === "about:blank") return;
      if (mine < shownSeq) {
        next.remove(); // a later preview is shown already
        return;
      }
      showError(next);
      shown.remove();
      next.id = "composer-preview";
      next.hidden = false;
      shown = next;
      shownSeq = mine;
    });
    previewButton.formTarget = next.name;
    form.requestSubmit(previewButton);
  }

  let timer = null;
  function refresh() {
    clearTimeout(timer);
    timer = setTimeout(render, 600);
  }
  text.addEventListener("input", refresh);
  form.addEventListener("change", (event) => {
    if (event.target !== fileInput) refresh();
  });
  previewButton.addEventListener("click", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    render();
  });

  render();
})();
