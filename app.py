"""Gradio speaker-identification demo: ``python app.py [--model M] [--host 127.0.0.1] [--port 7860] [--share]``.

Everything lives in :mod:`speakerid.webapp` (also ``speakerid app``); see docs/app.md.
"""

import sys

from speakerid.webapp import main

if __name__ == "__main__":
    sys.exit(main())
