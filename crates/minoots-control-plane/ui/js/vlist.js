// A virtualised table: of a list that may hold thousands of rows, only those in view (plus
// OVERSCAN_ROWS above and below) are in the DOM, between two spacer rows that keep the
// scroll height of all of them. Every row has the same height, ROW_PX, which app.css keeps
// (`.vlist tbody tr.row`: one line per cell, overflow cut with an ellipsis), so the rows in
// view follow from the scroll position alone, without measuring any. It also tells its
// page when the reader nears the end (to fetch the next page) and which rows are in view
// (for work worth doing only for them). It must never render every row.
import { html, useEffect, useLayoutEffect, useRef, useState } from "../vendor/htm-preact-3.1.1.js";

/** The height of every row, in CSS pixels (app.css sets the same). */
export const ROW_PX = 52;
/** Rows rendered beyond each edge of the view, so a quick scroll shows no blank. */
const OVERSCAN_ROWS = 10;
/** `onNearEnd` is called when fewer rows than this remain below the view. */
const NEAR_END_ROWS = 60;

/**
 * `rows` as a table `id` inside a scroll box of its own. `head` is the header row,
 * `cols` its column count, `renderRow(row)` one `<tr class="row">` (keyed).
 * `onNearEnd()` is called when the view comes near the last row; `onView(rows)` with the
 * rows in view whenever they change.
 */
export function VirtualTable({ id, head, cols, rows, renderRow, onNearEnd, onView }) {
  const box = useRef(null);
  const [view, setView] = useState({ top: 0, height: 800 });
  useLayoutEffect(() => {
    const el = box.current;
    const update = () => setView((v) => (v.top === el.scrollTop && v.height === el.clientHeight ? v : { top: el.scrollTop, height: el.clientHeight }));
    update();
    const ro = new ResizeObserver(update);
    ro.observe(el);
    el.addEventListener("scroll", update, { passive: true });
    return () => {
      ro.disconnect();
      el.removeEventListener("scroll", update);
    };
  }, []);
  const first = Math.max(0, Math.floor(view.top / ROW_PX) - OVERSCAN_ROWS);
  const last = Math.min(rows.length, Math.ceil((view.top + view.height) / ROW_PX) + OVERSCAN_ROWS);
  const shown = rows.slice(first, last);
  useEffect(() => {
    if (onNearEnd && rows.length - last < NEAR_END_ROWS) onNearEnd();
  }, [last, rows.length, onNearEnd]);
  useEffect(() => {
    if (onView) onView(shown);
  }, [first, last, rows]);
  const pad = (n, where) =>
    n > 0 && html`<tr class="pad" key=${where} aria-hidden="true" style=${{ height: `${n * ROW_PX}px` }}><td colspan=${cols}></td></tr>`;
  return html`<div class="vlist" id=${`${id}-box`} ref=${box}>
    <table class="list" id=${id} aria-rowcount=${rows.length + 1}>
      <thead>${head}</thead>
      <tbody>
        ${pad(first, "pad-top")}
        ${shown.map(renderRow)}
        ${pad(rows.length - last, "pad-bottom")}
      </tbody>
    </table>
  </div>`;
}
