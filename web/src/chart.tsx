/** A uPlot time-series chart; new data is set on the same chart, never a new one per update. */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

export interface Series {
  label: string;
  stroke: string;
}

export function Chart({ title, series, data, unit }: { title: string; series: Series[]; data: uPlot.AlignedData; unit: string }) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = host.current as HTMLDivElement;
    const chart = new uPlot(
      {
        title,
        width: Math.max(280, el.clientWidth),
        height: 180,
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5, spanGaps: false }))],
        axes: [{}, { label: unit, size: 60 }],
        scales: { x: { time: true } },
        legend: { live: false },
      },
      data,
      el,
    );
    plot.current = chart;
    const resize = () => chart.setSize({ width: Math.max(280, el.clientWidth), height: 180 });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      chart.destroy();
    };
  }, []);

  useEffect(() => plot.current?.setData(data), [data]);
  return <div class="chart" ref={host} />;
}
