// On a phone the header's links fold into a menu behind one button (dashboard.css).
// Loaded in the head, before the page is drawn, so the links never flash open;
// without this script the links simply wrap under each other.
"use strict";

document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", () => {
  const button = document.querySelector("header.top .menu-button");
  if (!button) return;
  button.addEventListener("click", () => {
    const open = button.closest("header").classList.toggle("open");
    button.setAttribute("aria-expanded", String(open));
  });
});
