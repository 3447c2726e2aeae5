"""Take a trained model out of tunesmith: GGUF files for llama.cpp and Ollama, written with gguf-py.

Layer: above train (it reads what a run wrote: model/, adapter/, run.json), below evaluate and serve.
"""
