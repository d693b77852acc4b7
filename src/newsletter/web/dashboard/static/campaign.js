// The campaign pages' script: ordering the article checklist, and showing "sending" as
// soon as Send is pressed (confirm.js asks first where a form says what to ask). Every
// form also works without it: the up and down buttons then ask the server to redraw the
// form in the new order.
"use strict";

function moveArticle(button) {
  const [direction] = button.value.split(":");
  const row = button.closest("li");
  const list = row.parentElement;
  if (direction === "up" && row.previousElementSibling) {
    list.insertBefore(row, row.previousElementSibling);
  } else if (direction === "down" && row.nextElementSibling) {
    list.insertBefore(row.nextElementSibling, row);
  }
  button.focus();
  // The order is part of the form: what follows its changes (the live preview) hears of it.
  list.dispatchEvent(new Event("change", { bubbles: true }));
  const title = row.querySelector("[data-title]");
  const status = document.getElementById("order-status");
  if (status && title) {
    const place = Array.prototype.indexOf.call(list.children, row) + 1;
    status.textContent = `${title.textContent} is now number ${place} of ${list.children.length}.`;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[name=move]");
  if (!button) return;
  event.preventDefault();
  moveArticle(button);
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (event.defaultPrevented) return; // the question in confirm.js was answered No
  if (form.dataset.sending !== undefined) {
    // The send takes a moment to start: say so at once, and never send twice.
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    const status = document.querySelector("#progress [data-status]");
    if (status) {
      status.textContent = "sending";
      status.dataset.status = "sending";
    }
  }
});
