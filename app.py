"""The zoo's Gradio demo from a checkout: `python app.py [--host 127.0.0.1] [--port 7860] [--share | --api]`.

The demo itself is `zoo/app.py`, which an install runs as `zoo demo` with the same flags.
"""
from zoo.app import main

if __name__ == "__main__":
    main()
