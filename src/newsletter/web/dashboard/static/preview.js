// "As subscriber" offers the people who match as one types. The form works without it:
// the page itself finds the person by name or part of the address.
"use strict";

(() => {
  const input = document.getElementById("subscriber");
  const list = document.getElementById("subscriber-matches");
  if (!input || !list || !input.dataset.find) return;
  let timer;
  let asked = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const text = input.value.trim();
      const ask = ++asked;
      if (!text) {
        list.replaceChildren();
        return;
      }
      try {
        const answer = await fetch(`${input.dataset.find}?q=${encodeURIComponent(text)}`, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        const people = answer.ok ? await answer.json() : [];
        if (ask !== asked) return; // a later key's answer is already on its way
        list.replaceChildren(
          ...people.map((person) => {
            const option = document.createElement("option");
            option.value = person.email;
            if (person.name) option.label = person.name;
            return option;
          }),
        );
      } catch {
        // Signed out, or the server away: typing and Show still work.
      }
    }, 150);
  });
})();
