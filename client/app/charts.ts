// Time series plots (uPlot) for the Network page: a rolling window of samples, drawn only while
// the page is visible (a hidden container has no width).
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface SeriesSpec {
  label: string;
  stroke: string;
}

const WINDOW = 180;

export class TimeChart {
  private readonly times: number[] = [];
  private readonly values: (number | null)[][];
  private plot: uPlot | null = null;

  constructor(
    private readonly container: HTMLElement,
    private readonly title: string,
    private readonly series: SeriesSpec[],
    private readonly unit: string,
  ) {
    this.values = series.map(() => []);
  }

  /** Adds one sample per series (null: no value this time); redraws when shown. */
  push(at: number, values: (number | null)[]): void {
    this.times.push(at / 1000);
    this.series.forEach((_, i) => this.values[i]!.push(values[i] ?? null));
    if (this.times.length > WINDOW) {
      this.times.shift();
      for (const v of this.values) v.shift();
    }
    this.container.dataset.samples = String(this.times.length);
    this.plot?.setData(this.data());
  }

  /** Draws (or resizes) the plot to the container's width; call when the page becomes visible. */
  draw(): void {
    const width = Math.max(this.container.clientWidth - 20, 240);
    if (this.plot) {
      this.plot.setSize({ width, height: 180 });
      this.plot.setData(this.data());
      return;
    }
    const unit = this.unit;
    this.plot = new uPlot(
      {
        title: this.title,
        width,
        height: 180,
        scales: { x: { time: true } },
        series: [{}, ...this.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, spanGaps: true, value: (_: uPlot, v: number | null) => (v == null ? '–' : `${round(v)} ${unit}`) }))],
        axes: [{}, { label: unit, size: 60 }],
      },
      this.data(),
      this.container,
    );
  }

  private data(): uPlot.AlignedData {
    return [this.times, ...this.values] as uPlot.AlignedData;
  }
}

const round = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
