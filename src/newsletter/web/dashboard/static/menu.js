// On a phone the header's links fold into a menu behind one button (dashboard.css).
// Loaded in the head, before the page is drawn, so the links never flash open;
// without this script the links simply wrap under each other.
"use strict";

document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", () => {
  const button = document.querySelector("header.top .menu-button");
  if (!button) return;
  const header = button.closest("header");
  const show = (open) => {
    header.classList.toggle("open", open);
    button.setAttribute("aria-expanded", String(open));
  };
  button.addEventListener("click", () => show(!header.classList.contains("open")));
  // Escape closes an open menu and gives the focus back to its button.
  header.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && header.classList.contains("open")) {
      show(false);
      button.focus();
    }
  });
});
