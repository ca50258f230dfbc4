"""Recognition: the recognizer and the channel policy that orders its steps,
partial-transcript agreement, batching, speaker turns and labels, the models' loading and
warm-up, the deployment statistics' file."""
