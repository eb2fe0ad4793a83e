"""The Gradio front end. Imports no torch: it talks to the engine through typed requests and job events."""


def build_ui(engine):
    import gradio as gr

    with gr.Blocks(title="SD Studio") as blocks:
        gr.Markdown("SD Studio — the web UI is being built.")
    return blocks
