from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="abcparam",
    version="0.1.0",
    description="abc-parametrizations (Tensor Programs IV) for PyTorch: layers, optimizer wrapper, exact regime classifier",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["abcparam", "abcparam.*"]),
    package_data={"abcparam": ["py.typed"]},
    install_requires=["torch>=2.1", "einops"],
    extras_require={
        "test": ["pytest", "hypothesis"],
        "plot": ["matplotlib>=3.5"],
        "progress": ["tqdm"],
        "word2vec": ["gensim"],
        "hf": ["transformers"],
        "docs": ["mkdocs>=1.5", "mkdocstrings[python]>=0.24"],
        "dev": ["pytest", "hypothesis", "mutmut>=3.3"],
        "all": ["pytest", "hypothesis", "matplotlib>=3.5", "tqdm", "gensim"],
    },
    entry_points={
        "console_scripts": ["abcparam=abcparam.cli:main_exit"],
        "pytest11": ["abcparam=abcparam.pytest_plugin"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
