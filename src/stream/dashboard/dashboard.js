// The stream's live page. Every value from the server is put in the page as text
// (textContent, SVG attributes set to numbers), never as HTML: producer ids and dead-letter
// reasons come from devices.
'use strict';

const $ = (id) => document.getElementById(id);
const text = (id, value) => {
  $(id).textContent = value;
};
const percent = (x) => (100 * x).toFixed(1) + '%';
const number = (x) => (x === undefined || x === null ? '-' : Number(x).toLocaleString('en-US'));
const ms = (x) => (x === undefined || x === null ? '-' : x < 10 ? x.toFixed(1) : Math.round(x).toString());

let updates = 0;
let chart = null;

function cell(row, value, className) {
  const td = document.createElement('td');
  td.textContent = value;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function replaceRows(tableId, items, fill) {
  const body = document.querySelector('#' + tableId + ' tbody');
  const rows = items.map((item) => {
    const tr = document.createElement('tr');
    fill(tr, item);
    return tr;
  });
  body.replaceChildren(...rows);
}

function throughputChart(points) {
  const data = [points.map((p) => p[0]), points.map((p) => p[1])];
  const width = Math.max(300, $('throughput-chart').clientWidth || 800);
  if (!chart) {
    chart = new uPlot(
        {
          width,
          height: 180,
          series: [{}, {label: 'records/s', stroke: '#2f6fb3', width: 2}],
          axes: [{}, {size: 60}],
          legend: {show: false}
        },
        data, $('throughput-chart'));
  } else {
    chart.setData(data);
  }
}

// One column per device: the interval as a line, the rate as a dot, the fleet's rate dashed.
function rateChart(devices, fleetRate) {
  const svg = $('rates');
  const ns = 'http://www.w3.org/2000/svg';
  const width = Math.max(300, svg.clientWidth || 800), height = 200, left = 44, bottom = 12, pad = 12;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('height', height);
  const top = Math.max(0.1, fleetRate, ...devices.map((d) => d.high));
  const y = (rate) => pad + (height - bottom - pad) * (1 - rate / top);
  const step = (width - left) / Math.max(1, devices.length);
  const shapes = [];
  const add = (name, attributes, title) => {
    const el = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, v);
    if (title !== undefined) {
      const t = document.createElementNS(ns, 'title');
      t.textContent = title;
      el.appendChild(t);
    }
    shapes.push(el);
  };
  for (const fraction of [0, 0.5, 1]) {
    add('text', {x: 2, y: y(fraction * top) + 4, 'font-size': 10, fill: '#5a6878'});
    shapes[shapes.length - 1].textContent = percent(fraction * top);
  }
  add('line', {x1: left, x2: width, y1: y(fleetRate), y2: y(fleetRate), stroke: '#5a6878', 'stroke-dasharray': '4 3'},
      'the fleet\'s rate, which devices are judged against: ' + percent(fleetRate));
  const colours = {faulty: '#b3261e', suspect: '#b26a00', healthy: '#1e7b34', unknown: '#8a97a6'};
  devices.forEach((d, i) => {
    const x = left + step * (i + 0.5);
    const colour = colours[d.verdict] || colours.unknown;
    add('line', {x1: x, x2: x, y1: y(d.low), y2: y(d.high), stroke: colour, 'stroke-width': 2});
    add('circle', {cx: x, cy: y(d.error_rate), r: 3, fill: colour},
        `producer ${d.producer_id}: ${d.verdict}, ${percent(d.error_rate)} (${percent(d.low)}-${percent(d.high)})`);
  });
  svg.replaceChildren(...shapes);
}

function render(state) {
  updates += 1;
  text('updates', updates);
  text('group', state.group);
  text('at', state.at);
  text('rate', number(Math.round(state.rate)));
  text('consumed', number(state.consumed));
  text('lag', number(state.lag));
  text('partitions', number(state.partitions));
  for (const key of ['faulty', 'suspect', 'healthy', 'unknown']) text(key, number(state.fleet[key]));
  text('fleet-rate', percent(state.fleet.rate));
  for (const [key, row] of [['inferred', 'latency-inferred'], ['counted', 'latency-counted']]) {
    const p = state.latency[key];
    const cells = document.querySelectorAll('#' + row + ' td');
    ['p50', 'p90', 'p99', 'max'].forEach((q, i) => {
      cells[i].textContent = ms(p[q]);
    });
  }
  throughputChart(state.throughput);
  rateChart(state.devices, state.fleet.rate);
  replaceRows('devices', state.devices, (tr, d) => {
    tr.dataset.producer = d.producer_id;
    cell(tr, d.producer_id);
    cell(tr, d.verdict, d.verdict);
    cell(tr, percent(d.error_rate));
    cell(tr, percent(d.low) + '-' + percent(d.high));
    cell(tr, number(d.labelled));
    cell(tr, number(d.images)).className = 'images';
    cell(tr, number(d.incorrect_total)).className = 'incorrect';
  });
  const dead = state.dead_letters;
  text('dead-status', dead.watching ? '' : 'no dead-letter topic exists yet');
  replaceRows('dead-reasons', Object.entries(dead.by_reason), (tr, [reason, n]) => {
    cell(tr, reason);
    cell(tr, number(n));
  });
  replaceRows('dead-latest', dead.latest, (tr, l) => {
    cell(tr, l.failed_at);
    cell(tr, l.topic);
    cell(tr, l.reason);
    cell(tr, l.producer);
    cell(tr, l.error);
  });
}

function connect() {
  const events = new EventSource('/api/events');
  events.onopen = () => {
    $('connection').textContent = 'live';
    $('connection').className = 'on';
  };
  events.onmessage = (event) => render(JSON.parse(event.data));
  events.onerror = () => {
    $('connection').textContent = 'reconnecting';
    $('connection').className = 'off';
  };
}

connect();
