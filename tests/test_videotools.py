from videotools import decode_index, index_frame


def test_index_frames_round_trip_through_h264(make_index_video):
    import av

    path = make_index_video(num_frames=40)
    with av.open(str(path)) as container:
        decoded = [decode_index(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert decoded == list(range(40))
    assert decode_index(index_frame(4095)) == 4095
