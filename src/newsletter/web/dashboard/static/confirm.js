// Asks before what cannot be taken back: a form with data-confirm="Question?" is sent
// only when the question is answered OK. Without script the form is sent as it is (the
// server checks every action anyway). Listened for while the event goes down to the
// form, so a No stops it before any other script reacts to the sending.
"use strict";

document.addEventListener(
  "submit",
  (event) => {
    const question = event.target.dataset.confirm;
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopPropagation();
    }
  },
  true,
);
