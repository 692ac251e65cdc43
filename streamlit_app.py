"""Figurine latent-space explorer: `streamlit run streamlit_app.py`."""
import streamlit as st

from core.paths import STATIC

if __name__ == "__main__":  # Streamlit runs this file as __main__; worker processes that import it draw nothing
    st.set_page_config(page_title="Figurine latent-space explorer", page_icon=str(STATIC / "icon.png"),
                       layout="wide")  # an icon served from here: the app asks nothing of other hosts
    # No page icons: the browser would fetch a page's Material icon from fonts.gstatic.com as the tab's icon, and
    # museum servers are often offline.
    st.navigation([
        st.Page("pages/home.py", title="Home", default=True),
        st.Page("pages/data.py", title="Data"),
        st.Page("pages/train.py", title="Train"),
        st.Page("pages/explore.py", title="Explore"),
        st.Page("pages/influence.py", title="Influence"),
    ]).run()
