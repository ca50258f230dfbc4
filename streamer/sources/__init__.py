"""Where audio comes from on this machine: files, the microphone and stdin (``local``), and
``replay`` of a recording into a running ``serve``."""
