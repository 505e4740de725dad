//! The protobuf codec of the gRPC API: prost's, except that a request that does not decode is
//! answered `InvalidArgument` (the caller's fault) instead of prost's `Internal`.

use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstCodec;

#[derive(Debug, Clone)]
pub struct CheckedCodec<E, D>(ProstCodec<E, D>);

impl<E, D> Default for CheckedCodec<E, D> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<E, D> Codec for CheckedCodec<E, D>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = <ProstCodec<E, D> as Codec>::Encoder;
    type Decoder = CheckedDecoder<<ProstCodec<E, D> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder(self.0.decoder())
    }
}

#[derive(Debug)]
pub struct CheckedDecoder<D>(D);

impl<D: Decoder<Error = Status>> Decoder for CheckedDecoder<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D::Item>, Status> {
        self.0.decode(src).map_err(|e| {
            Status::invalid_argument(format!("malformed request message: {}", e.message()))
        })
    }
}
