/* page.c - GET /: one self-contained page (no framework, no network
 * fetches beyond this server): prompt, negative prompt, size, steps,
 * sampler, seed; live progress and previews from the job's SSE stream;
 * the result with its parameters; a cancel button. The query string fills
 * the form (?prompt=...&width=64&steps=4) and autorun=1 submits it on load
 * (links that generate; the headless-browser test uses it) (srv.h). */
#include "srv.h"

const char srv_page_html[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>sdrt</title><style>"
    "body{font:14px sans-serif;max-width:900px;margin:20px auto}label{display:block;margin:4px 0}"
    "textarea{width:100%}img{max-width:100%;image-rendering:pixelated;border:1px solid #ccc}"
    "pre{white-space:pre-wrap}#prev,#out{width:256px;min-height:64px}</style></head><body><h1>sdrt</h1>"
    "<form id=\"f\"><label>Prompt<textarea id=\"prompt\" rows=\"3\">a photograph of an astronaut riding a horse</textarea></label>"
    "<label>Negative prompt<textarea id=\"neg\" rows=\"2\"></textarea></label>"
    "<label>Width <input id=\"w\" type=\"number\" value=\"512\" step=\"8\"> Height <input id=\"h\" type=\"number\" value=\"512\" step=\"8\"></label>"
    "<label>Steps <input id=\"steps\" type=\"number\" value=\"20\"> Sampler <select id=\"sampler\">"
    "<option>Euler a</option><option>Euler</option><option>DPM++ 2M</option><option>DPM++ 2M Karras</option>"
    "<option>DDIM</option><option>LMS</option><option>PLMS</option></select> Seed <input id=\"seed\" type=\"number\" value=\"-1\"></label>"
    "<button id=\"go\" type=\"submit\">Generate</button> <button id=\"cancel\" type=\"button\" disabled>Cancel</button></form>"
    "<p id=\"status\">idle</p><progress id=\"bar\" max=\"1\" value=\"0\"></progress>"
    "<div><img id=\"prev\" alt=\"preview\"> <img id=\"out\" alt=\"result\"></div><pre id=\"params\"></pre>"
    "<script>\n"
    "var job=null,es=null;function $(i){return document.getElementById(i)}\n"
    "$('f').onsubmit=function(e){e.preventDefault();var b={prompt:$('prompt').value,negative_prompt:$('neg').value,"
    "width:+$('w').value,height:+$('h').value,steps:+$('steps').value,sampler:$('sampler').value,seed:+$('seed').value,preview_every:1};"
    "$('status').textContent='submitting';fetch('/v1/jobs',{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(b)})"
    ".then(function(r){return r.json()}).then(function(j){if(!j.id){$('status').textContent='error: '+(j.detail||JSON.stringify(j));return}"
    "job=j.id;$('cancel').disabled=false;listen(j.id)})};\n"
    "function listen(id){if(es)es.close();es=new EventSource('/v1/jobs/'+id+'/events');"
    "es.addEventListener('queue',function(m){$('status').textContent='queued, position '+JSON.parse(m.data).position});"
    "es.addEventListener('step',function(m){var d=JSON.parse(m.data);$('status').textContent='step '+d.step+'/'+d.steps;$('bar').value=d.step/d.steps});"
    "es.addEventListener('preview',function(m){$('prev').src=JSON.parse(m.data).image;$('status').dataset.preview='1'});"
    "es.addEventListener('result',function(m){var d=JSON.parse(m.data);es.close();$('cancel').disabled=true;"
    "$('out').src=d.images[0].url;$('status').textContent='done';"
    "$('params').textContent=d.images[0].parameters+'\\n('+d.seconds.toFixed(2)+' s)'});"
    "es.addEventListener('error',function(m){if(m.data){$('status').textContent='failed: '+JSON.parse(m.data).error;es.close()}});"
    "es.addEventListener('cancelled',function(){$('status').textContent='cancelled';es.close();$('cancel').disabled=true})}\n"
    "$('cancel').onclick=function(){if(job)fetch('/v1/jobs/'+job,{method:'DELETE'})};\n"
    "var q=new URLSearchParams(location.search),map={prompt:'prompt',negative_prompt:'neg',width:'w',height:'h',steps:'steps',"
    "sampler:'sampler',seed:'seed'};for(var k in map)if(q.has(k))$(map[k]).value=q.get(k);"
    "if(q.get('autorun')==='1')$('go').click();\n"
    "</script></body></html>\n";
