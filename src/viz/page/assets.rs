//! The page's inline CSS and script: no file, no URL (the page's policy forbids fetches).

pub(super) const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;max-width:1250px}
h2{margin:1.2em 0 .2em;font-size:1.15em}
.cap{margin:0 0 .5em;color:#555}
.mats{display:flex;gap:2em;flex-wrap:wrap}
table.heat{border-collapse:collapse;font:12px/1.2 ui-monospace,monospace}
table.heat caption{font:13px system-ui,sans-serif;text-align:left;padding-bottom:.3em}
table.heat td,table.heat th{padding:2px 5px;text-align:right;border:1px solid #eee}
.scroll{overflow-x:auto}
svg text{font:11px sans-serif;fill:#222}
.lane line{stroke:#888;stroke-width:1}
line.a{stroke:#999;stroke-width:.7;stroke-opacity:.5;marker-end:url(#head)}
line.a.hi{stroke:#D55E00;stroke-opacity:.4}
line.hb{stroke:#0072B2;stroke-width:4;stroke-opacity:.55}
.dis{fill:#222}
.sw{display:inline-block;width:.9em;height:.9em;vertical-align:middle;margin:0 .2em 0 .8em}
.lat polyline{fill:none;stroke-width:1.3}
.lat polyline.all{stroke:#555;stroke-width:3;stroke-dasharray:6 3}
.grid{stroke:#ddd}
.pair{display:flex;gap:1em;flex-wrap:wrap}
.pair>div{flex:1 1 560px;min-width:0}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}
#filter input{width:6em}
";

/// Without a script every arrow shows; with one, the select lets one sender's show alone and
/// the time window (from/to ms, or `#t=FROM-TO` in the address) hides the arrows and bars that
/// lie wholly outside it. Times map to x through the svg's `data-x0`, `data-x1`, `data-ms`.
pub(super) const SCRIPT: &str = "
(function(){var f=document.getElementById('filter'),s=document.getElementById('only'),
a=document.getElementById('from'),b=document.getElementById('to'),g=document.getElementById('st');
f.hidden=false;var x0=+g.getAttribute('data-x0'),x1=+g.getAttribute('data-x1'),
ms=+g.getAttribute('data-ms');
function x(t){return ms>0?x0+Math.min(Math.max(t/ms,0),1)*(x1-x0):x0;}
function num(e,d){var t=parseFloat(e.value);return isNaN(t)?d:t;}
function apply(){var v=s.value,lo=x(num(a,0))-0.1,hi=x(num(b,ms))+0.1;
document.querySelectorAll('#st .a,#st .hb').forEach(function(e){
var p=+e.getAttribute('x1'),q=+e.getAttribute('x2');
var ok=(v===''||e.getAttribute('data-s')===v)&&Math.max(p,q)>=lo&&Math.min(p,q)<=hi;
e.style.display=ok?'':'none';});}
var m=/^#t=([0-9.]+)-([0-9.]+)$/.exec(location.hash);if(m){a.value=m[1];b.value=m[2];}
s.onchange=apply;a.oninput=apply;b.oninput=apply;apply();})();
";
