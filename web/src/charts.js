// Line and stacked-area charts (ECharts, canvas renderer, tooltips drawn on
// the canvas too, so series names from flow data are never HTML).
import * as echarts from 'echarts/core';
import { LineChart, SankeyChart } from 'echarts/charts';
import { GridComponent, TooltipComponent, LegendComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([LineChart, SankeyChart, GridComponent, TooltipComponent, LegendComponent, CanvasRenderer]);

const live = new Set();

// Lets go of the charts drawn inside `root`.
export function disposeCharts(root) {
  for (const c of [...live]) {
    if (root.contains(c.getDom())) {
      c.dispose();
      live.delete(c);
    }
  }
}

// series: [{name, points: [[ms, value], ...]}]
export function lineChart(el, series, { stacked = false, legend = false, format = (v) => String(v) } = {}) {
  const chart = echarts.init(el, null, { renderer: 'canvas' });
  live.add(chart);
  chart.setOption({
    animation: false,
    grid: { left: 60, right: 12, top: legend ? 30 : 10, bottom: 24 },
    tooltip: { trigger: 'axis', renderMode: 'richText', valueFormatter: (v) => format(v) },
    legend: legend ? { type: 'scroll', top: 0 } : undefined,
    xAxis: { type: 'time', axisLabel: { hideOverlap: true } },
    yAxis: { type: 'value', axisLabel: { formatter: (v) => format(v) } },
    series: series.map((s) => ({
      name: s.name,
      type: 'line',
      showSymbol: false,
      stack: stacked ? 'all' : undefined,
      areaStyle: stacked ? {} : undefined,
      data: s.points,
    })),
  });
  return chart;
}

// links: [{source, target, value}]; node names must differ between the two
// sides (a sankey has no cycles), so callers tag them.
export function sankeyChart(el, links, { format = (v) => String(v), onLink } = {}) {
  const chart = echarts.init(el, null, { renderer: 'canvas' });
  live.add(chart);
  const names = new Set(links.flatMap((l) => [l.source, l.target]));
  chart.setOption({
    animation: false,
    tooltip: { trigger: 'item', renderMode: 'richText', valueFormatter: (v) => format(v) },
    series: [{
      type: 'sankey',
      left: 10, right: 160, top: 10, bottom: 10,
      emphasis: { focus: 'adjacency' },
      lineStyle: { color: 'gradient', curveness: 0.5 },
      label: { fontSize: 11 },
      data: [...names].map((name) => ({ name })),
      links,
    }],
  });
  if (onLink) chart.on('click', (ev) => { if (ev.dataType === 'edge') onLink(ev.data); });
  return chart;
}

window.addEventListener('resize', () => {
  for (const c of live) c.resize();
});
