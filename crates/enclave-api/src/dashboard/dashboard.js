// The dashboard's only script, served by the server itself; every page works without it.
// "Copy" buttons copy the value of the input their data-copy names.
document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-copy]');
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  if (!input) return;
  input.select();
  navigator.clipboard.writeText(input.value).then(
    () => { button.textContent = 'Copied'; },
    () => { button.textContent = 'Selected: press Ctrl+C'; },
  );
});

// Ctrl+Enter (Cmd+Enter on a Mac) in the SQL console runs the statement.
document.addEventListener('keydown', (event) => {
  const area = event.target.closest && event.target.closest('textarea[data-run-on-ctrl-enter]');
  if (!area || event.key !== 'Enter' || !(event.ctrlKey || event.metaKey)) return;
  event.preventDefault();
  area.form.requestSubmit();
});

// An invitation link carries its token after '#', which the browser never sends to a server:
// the page puts it in the form.
const fromFragment = document.querySelector('input[data-from-fragment]');
if (fromFragment && location.hash.length > 1) {
  fromFragment.value = decodeURIComponent(location.hash.slice(1));
}
