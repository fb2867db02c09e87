// Sort on data-v (raw value) when present; numbers numerically, text case-insensitively,
// missing values always last. Plain JS, no library.
(function(){
  function key(cell){
    var v = cell.hasAttribute('data-v') ? cell.getAttribute('data-v') : cell.textContent;
    v = v.trim();
    if (v === '') return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function compare(a, b, asc){
    if (a === null && b === null) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    var r;
    if (typeof a === typeof b) r = a < b ? -1 : a > b ? 1 : 0;
    else r = typeof a === 'number' ? -1 : 1;
    return asc ? r : -r;
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(head.cells, function(th, col){
      th.setAttribute('title', 'click to sort');
      th.addEventListener('click', function(){
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(head.cells, function(h){ h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function(ra, rb){
          return compare(key(ra.cells[col]), key(rb.cells[col]), asc) ||
                 (Number(ra.getAttribute('data-order')) - Number(rb.getAttribute('data-order')));
        });
        rows.forEach(function(r){ body.appendChild(r); });
      });
    });
  });
})();
