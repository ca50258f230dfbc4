// The colour of each emotion label, one source for the dashboard (app.js) and the HTML
// report (streamer/apps/report.py reads the object below as JSON: keep it strict JSON).
const LABEL_COLOURS = {
  "neutral": "#8b949e",
  "calm": "#5fa8d3",
  "happy": "#f2b705",
  "happiness": "#f2b705",
  "joy": "#f2b705",
  "excited": "#e8590c",
  "sad": "#3b6fd8",
  "sadness": "#3b6fd8",
  "angry": "#d93b3b",
  "anger": "#d93b3b",
  "frustrated": "#f76707",
  "frustration": "#f76707",
  "fear": "#8e4ec6",
  "fearful": "#8e4ec6",
  "disgust": "#2f9e44",
  "disgusted": "#2f9e44",
  "surprise": "#0ca678",
  "surprised": "#0ca678",
  "contempt": "#a0785a",
  "other": "#adb5bd",
  "unknown": "#d0d0d0"
};
